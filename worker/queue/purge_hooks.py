"""What other packages do when tasks are purged: the ``worker.purge_hooks`` entry points.

The queue deletes rows; what a package wrote for a task elsewhere (the ``tts`` package's audio
files under ``<data_dir>/outputs/<task id>/``) is that package's to delete. It declares a hook::

    [project.entry-points."worker.purge_hooks"]
    tts = "tts.outputs:remove_task_outputs"

Each entry point names a callable ``hook(config: QueueConfig, task_ids: list[str]) -> None``.
:meth:`WorkerQueue.purge <worker.WorkerQueue.purge>` calls every hook after the purge's
transactions have committed, in batches of at most :data:`HOOK_BATCH` ids, each call in a
thread (hooks delete files). A hook that cannot be loaded or that raises is logged with the
task ids it was given; the purge stands (the rows are gone) and the other hooks still run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.core.config import QueueConfig

GROUP = "worker.purge_hooks"
#: At most this many task ids per hook call.
HOOK_BATCH = 500

PurgeHook = Callable[["QueueConfig", list[str]], None]

log = logging.getLogger(__name__)


def load_purge_hooks() -> list[tuple[str, PurgeHook]]:
    """The hooks the installed packages declare, by entry-point name (one that fails to load
    is logged and left out)."""
    hooks: list[tuple[str, PurgeHook]] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        try:
            hooks.append((ep.name, ep.load()))
        except Exception as exc:  # a broken package must not stop the others' clean-up
            log.error("purge hook %r (%s) could not be loaded: %s", ep.name, ep.value, exc)
    return hooks


async def run_purge_hooks(
    config: QueueConfig,
    task_ids: list[str],
    hooks: list[tuple[str, PurgeHook]] | None = None,
) -> None:
    """Call each hook (default: :func:`load_purge_hooks`) on ``task_ids``, in batches."""
    if not task_ids:
        return
    for name, hook in load_purge_hooks() if hooks is None else hooks:
        for start in range(0, len(task_ids), HOOK_BATCH):
            batch = task_ids[start : start + HOOK_BATCH]
            try:
                await asyncio.to_thread(hook, config, batch)
            except Exception:
                log.exception(
                    "purge hook %r failed for tasks %s; the tasks stay purged",
                    name,
                    ", ".join(batch),
                )


__all__ = ["GROUP", "HOOK_BATCH", "PurgeHook", "load_purge_hooks", "run_purge_hooks"]
