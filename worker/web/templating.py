"""The pages' Jinja2 environment (autoescaping everything, whatever the template's name)
and what every page's layout (``base.html``) needs from the request."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def _instant(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.filters["instant"] = _instant


def csrf_token(request: Request) -> str:
    """The request's CSRF token for the layout's meta tag (empty until a guard sets
    ``request.state.csrf_token``)."""
    token = getattr(request.state, "csrf_token", "")
    return token if isinstance(token, str) else ""


def layout(request: Request, title: str) -> dict[str, Any]:
    """What ``base.html`` renders: the title, the mount prefix, read-only, the CSRF token."""
    return {
        "title": title,
        "root": request.scope.get("root_path", ""),
        "read_only": bool(request.app.state.read_only),
        "csrf_token": csrf_token(request),
    }
