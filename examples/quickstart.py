"""The bare API, end to end, on a database file of its own (quickstart.db here).

Enqueues a few speech tasks, claims them, completes or retries them, runs the sweep and
prints the statistics; nothing is synthesized (a worker would do that: see the README).
"""

from __future__ import annotations

import asyncio
import logging

from tts import TextToSpeechRequest
from worker import QueueConfig, Task, TaskItem, TaskState, WorkerQueue


async def main() -> None:
    config = QueueConfig(database_url="sqlite+aiosqlite:///quickstart.db")
    queue = WorkerQueue(config)
    await queue.initialize()
    try:
        texts = ["Hello, world!", "The queue survives crashes.", "Goodbye."]
        tasks = [
            Task(
                id="",
                state=TaskState.PENDING,
                schedule_at=0,
                items=[
                    TaskItem(request=TextToSpeechRequest(text=text, voice_id="kokoro.af_heart"))
                ],
                created_at=0,
                updated_at=0,
            )
            for text in texts
        ]
        inserted = await queue.enqueue(tasks)
        print(f"enqueued {inserted} tasks into {config.database_url}")
        for task in await queue.dequeue(size=5):
            if task.id == tasks[-1].id:
                await queue.mark_as_retry(
                    task.id, "demo: pretend this one failed", lease_id=task.lease_id
                )
                print(f"  {task.id} failed once; it will be retried after backoff")
            else:
                await queue.mark_as_complete(task.id, lease_id=task.lease_id)
                print(f"  {task.id} completed")
        swept = await queue.retry(size=10)
        for task in swept:
            print(f"  sweep: {task.id} is {task.state.value} again, due at {task.schedule_at:.0f}")
        print("stats:", await queue.get_queue_stats())
    finally:
        await queue.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
