"""A Django project whose tasks run on the queue (see ../README.md)."""
