"""HubError over HTTP: its status (4xx), the message in English, and its code, field and params.

The body keeps the shape clients already read: a refusal of one field is FastAPI's own 422
(`detail: [{loc, msg, type}]`), anything else `detail: "message"`. `code`, `field` and `params`
sit beside `detail` in both, so a client can match the stable code instead of the words.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub.core.errors import HubError, InvalidValue, describe

log = logging.getLogger(__name__)


def error_body(error: HubError) -> dict[str, object]:
    message = describe(error)
    detail: object = message
    if isinstance(error, InvalidValue) and error.field is not None:
        detail = [{"type": error.code, "loc": ["body", error.field], "msg": message, "input": None}]
    return {"detail": detail, "code": error.code, "field": error.field, "params": error.params}


async def hub_error_response(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HubError)
    log.info("%s %s refused: %r", request.method, request.url.path, error)
    return JSONResponse(error_body(error), status_code=error.status)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HubError, hub_error_response)
