"""The submit page, a form per registered request kind generated from its pydantic JSON
schema, and ``GET /api/kinds`` (each kind and its schema).

Fields become inputs by their schema type: a string a text input, an ``enum`` a select, a
number or integer a number input, a boolean a checkbox, an array of strings a textarea of
one value a line; anything else (an object, a list of objects, a union) a JSON textarea. An
optional field (``anyOf`` with null) left empty is left out, so its default applies. The
posted form becomes the body ``POST /api/tasks`` takes and goes through the same
validation (:func:`worker.web.documents.build_task`); each refusal is shown next to its
field with pydantic's or the library's message. Success redirects to the task's page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from worker.core.errors import QueueError
from worker.core.kinds import registered_kinds
from worker.core.validation_errors import error_message
from worker.web.csrf import form_fields
from worker.web.documents import build_task
from worker.web.schemas import Submit
from worker.web.tasks_api import Counted, Queue
from worker.web.templating import render

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["tasks"])

Widget = Literal["text", "number", "integer", "checkbox", "select", "lines", "json"]


@dataclass(frozen=True, slots=True)
class FormField:
    """One input of a kind's form (``name`` is the request field's)."""

    name: str
    label: str
    widget: Widget
    required: bool
    description: str = ""
    choices: tuple[str, ...] = ()
    default: str = ""


#: The task options every form has: (name, label, widget, default).
OPTIONS: tuple[FormField, ...] = (
    FormField("queue", "queue", "text", required=False, default="default"),
    FormField("priority", "priority", "integer", required=False, default="0",
              description="higher runs first"),
    FormField("delay_s", "delay (s)", "number", required=False, description="run no sooner"),
    FormField("name", "name", "text", required=False),
    FormField("idempotency_key", "idempotency key", "text", required=False,
              description="a live task with this key is reused"),
)  # fmt: skip


def _unwrapped(prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``prop`` without an ``anyOf [X, null]`` around it, and whether null was allowed."""
    options = prop.get("anyOf")
    if isinstance(options, list):
        others = [o for o in options if o.get("type") != "null"]
        if len(others) == 1 and len(others) < len(options):
            return {**prop, **others[0]}, True
    return prop, False


def _widget(prop: dict[str, Any]) -> tuple[Widget, tuple[str, ...]]:
    if isinstance(prop.get("enum"), list) and all(isinstance(v, str) for v in prop["enum"]):
        return "select", tuple(prop["enum"])
    kind = prop.get("type")
    if kind == "string":
        return "text", ()
    if kind == "number":
        return "number", ()
    if kind == "integer":
        return "integer", ()
    if kind == "boolean":
        return "checkbox", ()
    if kind == "array" and prop.get("items", {}).get("type") == "string":
        return "lines", ()
    return "json", ()


def _default(widget: Widget, prop: dict[str, Any]) -> str:
    if "default" not in prop or prop["default"] is None:
        return ""
    value = prop["default"]
    if widget == "json":
        return json.dumps(value)
    if widget == "lines":
        return "\n".join(str(v) for v in value)
    if widget == "checkbox":
        return "on" if value else ""
    return str(value)


def form_of(model: type[BaseModel]) -> list[FormField]:
    """The inputs of ``model``'s form, from its JSON schema."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        prop, _ = _unwrapped(raw)
        widget, choices = _widget(prop)
        fields.append(
            FormField(
                name=name,
                label=str(raw.get("title") or name),
                widget=widget,
                required=name in required,
                description=str(raw.get("description", "")),
                choices=choices,
                default=_default(widget, prop),
            )
        )
    return fields


def _value(spec: FormField, raw: list[str]) -> tuple[bool, Any]:
    """Whether the form gave ``spec`` a value, and that value as JSON for the request (a
    ``ValueError`` says why a JSON textarea's text is not JSON)."""
    if spec.widget == "checkbox":
        return True, bool(raw and raw[0])
    text = raw[0] if raw else ""
    if spec.widget == "lines":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return bool(lines) or spec.required, lines
    if not text.strip():
        return False, None
    if spec.widget == "json":
        try:
            return True, json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
    return True, text  # numbers too: the model parses them and says what is wrong


def _where(loc: tuple[int | str, ...]) -> str:
    """The form field an error location is about (``request.text``, ``priority``)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "request" and len(parts) > 1:
        return f"request.{parts[1]}"
    return parts[0] if parts else ""


@dataclass
class KindForm:
    kind: str
    description: str
    fields: list[FormField]
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    problem: str | None = None


def kind_forms() -> list[KindForm]:
    return [
        KindForm(kind, (model.__doc__ or "").strip().split("\n\n")[0], form_of(model))
        for kind, model in registered_kinds().items()
    ]


def _add(errors: dict[str, str], where: str, message: str) -> None:
    errors[where] = f"{errors[where]}; {message}" if where in errors else message


@router.get("/submit", response_class=HTMLResponse)
async def submit_page(request: Request) -> Response:
    return render(request, "submit.html", forms=kind_forms(), options=OPTIONS, chosen=None)


@router.post("/submit", response_class=HTMLResponse)
async def submit_form(request: Request, queue: Queue, counters: Counted) -> Response:
    posted = form_fields(await request.body())
    kind = posted.get("kind", [""])[0]
    forms = kind_forms()
    form = next((f for f in forms if f.kind == kind), None)
    if form is None:
        return render(
            request, "submit.html", status_code=422, forms=forms, options=OPTIONS, chosen=None,
            problem=f"unknown request kind {kind!r}",
        )  # fmt: skip
    form.values = {name: values[0] for name, values in posted.items() if values}
    task_id = await _submitted(form, posted, queue, counters)
    if task_id is None:
        return render(
            request, "submit.html", status_code=422, forms=forms, options=OPTIONS, chosen=kind
        )
    return RedirectResponse(f"{request.scope.get('root_path', '')}/tasks/{task_id}", 303)


async def _submitted(
    form: KindForm, posted: dict[str, list[str]], queue: Queue, counters: Counted
) -> str | None:
    """Enqueue what ``form`` was posted with; the task's id, or None with ``form.errors``."""
    request: dict[str, Any] = {}
    for spec in form.fields:
        try:
            given, value = _value(spec, posted.get(f"request.{spec.name}", []))
        except ValueError as exc:
            _add(form.errors, f"request.{spec.name}", str(exc))
            continue
        if given:
            request[spec.name] = value
    body: dict[str, Any] = {"kind": form.kind, "request": request}
    for spec in OPTIONS:
        given, value = _value(spec, posted.get(spec.name, []))
        if given:
            body[spec.name] = value
    if form.errors:
        return None
    submitted = None
    try:
        registered_kinds()[form.kind].model_validate(request)
    except ValidationError as exc:
        for error in exc.errors():
            _add(form.errors, _where(("request", *error["loc"])), error_message(error))
    try:
        submitted = Submit.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            _add(form.errors, _where(tuple(error["loc"])), error_message(error))
    if submitted is None or form.errors:
        return None
    try:
        task = build_task(submitted, queue.clock())  # the API's own validation
        await queue.enqueue([task])
    except QueueError as exc:
        form.problem = str(exc)
        return None
    counters.submitted.labels(queue=task.queue).inc()
    return task.id


@api.get("/kinds", summary="The registered request kinds and their JSON schemas")
async def list_kinds() -> list[dict[str, Any]]:
    return [
        {"kind": kind, "schema": model.model_json_schema()}
        for kind, model in registered_kinds().items()
    ]
