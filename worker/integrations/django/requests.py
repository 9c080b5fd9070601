"""The ``django_task`` request: a call of a Django task function (``django.tasks``), as the
queue stores it. Importing it needs no Django (a ``wq`` that only reads tasks loads it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

#: The request kind of a Django task (the ``worker.request_kinds`` entry point's name).
KIND = "django_task"


class DjangoTaskRequest(BaseModel):
    """Call the Django task ``module_path`` (``package.module.function``: its
    ``Task.module_path``) with JSON ``args`` and ``kwargs``, in a worker that has set up
    Django; ``backend`` is the alias of the ``TASKS`` entry it was enqueued through."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    module_path: str = Field(min_length=3, max_length=500, pattern=r"^[\w.]+\.\w+$")
    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    backend: str = Field("default", min_length=1, max_length=200)
    takes_context: bool = False
