"""Alembic migrations of the queue's schema (``worker.storage.schema``); 0001 creates it."""
