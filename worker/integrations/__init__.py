"""Integrations with web frameworks: Django's task framework (:mod:`worker.integrations.django`)
and a FastAPI/Starlette lifespan (:mod:`worker.integrations.fastapi`). An edge, as the CLI and
the web app are: nothing below imports it, and each module imports its framework only when
used."""
