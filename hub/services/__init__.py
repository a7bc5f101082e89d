"""What the hub does, as keyword-only functions over a database session (no FastAPI, no Typer)."""
