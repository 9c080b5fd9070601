"""Alembic migrations of the queue's schema (``worker.schema``). Revision 0001 creates it."""
