"""A FastAPI app with the queue inside it (see main.py)."""
