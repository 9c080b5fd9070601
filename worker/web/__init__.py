"""The HTTP edge: a JSON API, Prometheus metrics and a small overview page over one
:class:`~worker.queue.worker_queue.WorkerQueue` (the ``web`` extra: FastAPI, uvicorn,
prometheus-client).

:func:`create_app` returns an ASGI app that a FastAPI or Starlette service mounts under a
prefix; ``wq web`` serves it. The caller opens and closes the queue.
"""

from __future__ import annotations

from worker.web.app import create_app

__all__ = ["create_app"]
