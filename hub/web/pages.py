"""Server-rendered pages (Jinja2); assets are served by the hub, never from a CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from hub.api.deps import SessionDep
from hub.api.machines import machines_public

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

STATE_LABELS = {
    "offline": "Offline",
    "idle": "Free",
    "in_use": "In use",
    "busy": "Working",
    "printing": "Printing",
    "locked": "Locked out",
}


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "index.html", {"machines": machines_public(session), "labels": STATE_LABELS}
    )
