"""Storage: the SQL the queue runs, written once, and what differs per backend.

Statements are SQLAlchemy Core, built in the queue's modules from the portable vocabulary of
:mod:`worker.storage.sql`; each backend (:mod:`worker.storage.sqlite`,
:mod:`worker.storage.postgres`) says how that vocabulary is spelled in its SQL, and builds the
few statements whose shape differs (the claim, the counts) in its
:class:`~worker.storage.backend.Backend`. No backend's syntax appears outside its folder (a
test greps for it).
"""
