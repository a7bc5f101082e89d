"""CSRF protection for the pages: a token derived by HMAC from the secret cookie it goes with.

Signed in, the secret is the web login token (HttpOnly); before signing in it is a random
pre-session cookie. Another site can make the browser send those cookies but cannot read
them, so it cannot compute the token that every state-changing form and htmx request must
carry (hidden field `csrf`, or the `X-CSRF-Token` header htmx sends from `hx-headers`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Depends, HTTPException, Request, Response

from hub.core.deps import SESSION_COOKIE

PRESESSION_COOKIE = "atelier_presession"
HEADER = "x-csrf-token"
FIELD = "csrf"


def _secret(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE)


def token_for(secret: str) -> str:
    return hmac.new(secret.encode(), b"atelier-web-csrf-v1", hashlib.sha256).hexdigest()


def start_presession(request: Request) -> str | None:
    """A new pre-session secret when the browser holds neither cookie (set it on the
    response with `set_presession`), so the login form can carry a token too."""
    if _secret(request):
        return None
    secret = secrets.token_urlsafe(32)
    request.state.csrf_secret = secret
    return secret


def set_presession(request: Request, response: Response, secret: str) -> None:
    response.set_cookie(
        PRESESSION_COOKIE,
        secret,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
    )


def csrf_token(request: Request) -> str:
    secret = getattr(request.state, "csrf_secret", None) or _secret(request)
    return token_for(secret) if secret else ""


async def require_csrf(request: Request) -> None:
    """Refuse (403) a state-changing request from the pages without the right token.

    A request signed with an `Authorization` header comes from a script, not from a browser
    sending cookies on its own, so it needs no token."""
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    secret = _secret(request)
    given = request.headers.get(HEADER, "")
    if not given:
        form = await request.form()
        value = form.get(FIELD, "")
        given = value if isinstance(value, str) else ""
    if not secret or not given or not hmac.compare_digest(given, token_for(secret)):
        raise HTTPException(
            status_code=403,
            detail="the form's security token is missing or stale: reload the page and try again",
        )


# What a route that changes something declares: `dependencies=[Checked]`.
Checked = Depends(require_csrf)
