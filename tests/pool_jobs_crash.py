"""A processors module that ends its process at once, with code 9: ``wq worker --processors
tests.pool_jobs_crash`` is a worker that dies at every start (the pool's backoff)."""

import os

os._exit(9)
