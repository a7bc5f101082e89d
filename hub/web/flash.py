"""Post-redirect-get for every form: the success message rides a short signed cookie to the
page the browser is sent to, which shows it once, in the reader's language.

The cookie holds the English template and its values (never translated text), signed with
an HMAC of the browser's own session secret, so another site cannot plant a message and a
reload or the back button never submits a form twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from hub.core.deps import SESSION_COOKIE
from hub.web.csrf import PRESESSION_COOKIE

NOTICE_COOKIE = "atelier_notice"
_MAX = 3000  # bytes of cookie value: a browser keeps 4 kB a cookie


def _secret(request: Request) -> bytes:
    raw = request.cookies.get(SESSION_COOKIE) or request.cookies.get(PRESESSION_COOKIE) or ""
    return raw.encode()


def _sign(secret: bytes, body: str) -> str:
    return hmac.new(secret, b"atelier-notice-v1:" + body.encode(), hashlib.sha256).hexdigest()


def done(request: Request, url: str, message: str, **params: Any) -> Response:
    """A 303 to `url` (a path on this hub) that shows `message` (an N_() template whose
    {names} are `params`) once there."""
    if not url.startswith("/") or url.startswith("//"):
        url = "/"
    body = base64.urlsafe_b64encode(
        json.dumps({"m": message, "p": {k: str(v) for k, v in params.items()}}).encode()
    ).decode()
    response = RedirectResponse(url, status_code=303)
    secret = _secret(request)
    if secret and len(body) < _MAX:
        response.set_cookie(
            NOTICE_COOKIE,
            f"{body}.{_sign(secret, body)}",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            max_age=120,
            path="/",
        )
    return response


def taken(request: Request, gettext: Any) -> str | None:
    """The message the last form left for this page, translated, or None."""
    value = request.cookies.get(NOTICE_COOKIE, "")
    body, _, signature = value.rpartition(".")
    secret = _secret(request)
    if not body or not secret or not hmac.compare_digest(signature, _sign(secret, body)):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
        message, params = str(data["m"]), dict(data["p"])
        return str(gettext(message)).format(**params)
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def clear(request: Request, response: Response) -> None:
    if NOTICE_COOKIE in request.cookies:
        response.delete_cookie(NOTICE_COOKIE, path="/")
