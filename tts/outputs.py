"""Where the ``tts`` and ``audio`` processors write: one folder per task, under the queue's
data directory (``QueueConfig.data_dir``, ``QUEUE_DATA_DIR``)::

    <data_dir>/outputs/<task id>/<item index>.<ext>          the item's audio file
    <data_dir>/outputs/<task id>/<item index>.parts/         sentences of an unfinished item

:func:`remove_task_outputs` is this package's ``worker.purge_hooks`` entry point: purging a
task deletes its folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker import QueueConfig


def outputs_dir(config: QueueConfig) -> Path:
    """``<data_dir>/outputs``, absolute (results name absolute paths)."""
    return config.data_dir.absolute() / "outputs"


def task_dir(config: QueueConfig, task_id: str) -> Path:
    """The folder of one task's outputs.

    :raises ValueError: ``task_id`` is not a plain file name (it would lead outside).
    """
    if not task_id or task_id in {".", ".."} or Path(task_id).name != task_id:
        raise ValueError(f"task id {task_id!r} cannot name an output folder")
    return outputs_dir(config) / task_id


def remove_task_outputs(config: QueueConfig, task_ids: list[str]) -> None:
    """Delete the output folders of ``task_ids`` (the purge hook); missing ones are fine.

    Every folder is tried; then one :class:`OSError` names those that could not be removed.
    """
    failed: list[str] = []
    for task_id in task_ids:
        try:
            folder = task_dir(config, task_id)
        except ValueError:
            continue  # nothing was ever written for it
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed.append(f"{folder}: {exc}")
    if failed:
        raise OSError(f"could not remove {len(failed)} output folders: {'; '.join(failed)}")
