"""The pages' Jinja2 environment (autoescaped: nothing from a task reaches a page
unescaped) and what every page's layout (``base.html``) gets: ``title``, ``root`` (where
the app is mounted), ``read_only`` (no action is shown) and ``csrf_token``
(:mod:`worker.web.csrf`)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from worker.web.csrf import token_for

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def _instant(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.filters["instant"] = _instant


def layout(request: Request, title: str) -> dict[str, Any]:
    """What ``base.html`` renders: the title, the mount prefix, read-only, the CSRF token
    (issued here when the request has none: the response sets it as the cookie)."""
    return {
        "title": title,
        "root": request.scope.get("root_path", ""),
        "read_only": bool(request.app.state.read_only),
        "csrf_token": token_for(request),
    }


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page ``name`` with the layout's values and ``context``."""
    values = {**layout(request, str(context.pop("title", "worker-queue"))), **context}
    return HTMLResponse(templates.get_template(name).render(**values), status_code=status_code)
