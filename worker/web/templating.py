"""The pages' Jinja2 environment (autoescaped: nothing from a task reaches a page
unescaped) and what every page's template gets: ``root`` (where the app is mounted),
``read_only`` (no action is shown) and ``csrf_token`` (:mod:`worker.web.csrf`)."""

from __future__ import annotations

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


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    page = templates.get_template(name).render(
        root=request.scope.get("root_path", ""),
        read_only=request.app.state.read_only,
        csrf_token=token_for(request),
        **context,
    )
    return HTMLResponse(page, status_code=status_code)
