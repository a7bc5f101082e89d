"""The Atelier hub: ingest, API, dashboard, billing and statistics."""

__version__ = "0.1.0"
