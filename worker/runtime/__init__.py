"""The runtime: workers that claim, run and acknowledge tasks on a queue.

``workers`` (``Worker``, ``run_workers``), the claim loop (``loop``), batched
acknowledgements (``acks``), the retry sweeper, liveness heartbeats and the run watcher,
wake-ups, handlers (``processors``, ``context``, ``execute``, ``outcomes``), events, and the
purge hooks other packages plug in.
"""
