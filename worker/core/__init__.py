"""The core: what a task is and the rules it follows, with no SQL and no I/O.

States and their transitions, the models, ids, backoff, request kinds, settings, errors, the
bounds on what may be stored, and the checks on the public API's arguments. Every other layer
(``storage``, ``queue``, ``runtime``, and the edges: ``cli``, ``webhooks``) builds on it.
"""
