"""A FastAPI app that defers work to the queue and shows it: a task function, a POST that
defers it, a GET that shows the task, the dashboard at /queue, and one worker loop inside
the app. Run it from the repository's root as written::

    python examples/fastapi_app/main.py               # http://127.0.0.1:8000
    uvicorn examples.fastapi_app.main:app             # the same app

    curl -X POST localhost:8000/greetings -H 'content-type: application/json' -d '{"name": "Ada"}'
    curl localhost:8000/greetings/<id>                # {"state": "completed", "result": ...}

The queue is ``data/fastapi-example.db`` (``QUEUE_DATABASE_URL`` names another); a ``wq
worker --processors examples.fastapi_app.main`` elsewhere would run the same tasks.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from worker import Jobs, TaskNotFoundError
from worker.integrations.fastapi import QueueDep, queue_lifespan

jobs = Jobs()


@jobs.task(name="example.greet", max_attempts=3)
async def greet(name: str, excited: bool = False) -> dict[str, str]:
    """The work: here a greeting; in a real app, an e-mail, a report, a transcoding."""
    return {"greeting": f"Hello, {name}{'!' if excited else '.'}"}


class GreetingIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    excited: bool = False


app = FastAPI(
    title="greetings",
    lifespan=queue_lifespan(
        os.environ.get("QUEUE_DATABASE_URL", "sqlite:///data/fastapi-example.db"),
        workers=1,
        jobs=[jobs],
        dashboard="/queue",
    ),
)


@app.post("/greetings", status_code=202)
async def create_greeting(body: GreetingIn) -> dict[str, str]:
    task = await greet.defer(name=body.name, excited=body.excited)
    return {"id": task.id, "state": task.state, "url": f"/greetings/{task.id}"}


@app.get("/greetings/{task_id}")
async def show_greeting(task_id: str, queue: QueueDep) -> dict[str, Any]:
    try:
        task = await queue.get_task(task_id)
    except (TaskNotFoundError, ValueError):
        raise HTTPException(404, f"no greeting {task_id}") from None
    return {"id": task.id, "state": task.state, "result": task.items[0].result,
            "error": task.last_error}  # fmt: skip


if __name__ == "__main__":
    import logging

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    uvicorn.run(
        app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000"))
    )
