"""Helpers for the web tests: sign in through the login form as a browser does."""

from __future__ import annotations

import re
from typing import Any

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: Any, username: str, password: str) -> str:
    """Log in with the form; returns the CSRF token of the signed-in pages."""
    token = csrf_of(client.get("/login").text)
    page = client.post(
        "/login",
        data={"username": username, "password": password, "csrf": token},
        follow_redirects=True,
    )
    assert page.status_code == 200, page.text[:500]
    return csrf_of(page.text)
