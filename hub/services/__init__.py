"""What the hub does, as keyword-only functions over a session, for the API, web and CLI."""
