"""The web app: server-rendered pages (Jinja2, htmx), their CSRF tokens and translations."""
