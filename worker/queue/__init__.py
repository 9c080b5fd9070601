"""The queue API: :class:`~worker.queue.worker_queue.WorkerQueue` validates what it is given,
applies policy (defaults, backoff, what a state allows) and runs the storage's named
operations (:mod:`worker.storage.interface`); ``admin`` holds its operator methods, ``explain``
the one-line answers of ``why``."""
