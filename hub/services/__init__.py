"""What the hub does, as keyword-only functions over a session: the API, web and CLI call them."""
