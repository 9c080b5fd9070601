"""Built-in request kinds: ``call`` (a Python callable) and ``command`` (a subprocess).

Both run code named by task data, so both are off until the operator opts in:
``QUEUE_CALL_ALLOWED_MODULES`` lists the modules whose callables a ``call`` task may run, and
``QUEUE_ALLOW_COMMANDS=true`` lets ``command`` tasks start processes.
"""

from worker.builtins.requests import CallRequest, CommandRequest

__all__ = ["CallRequest", "CommandRequest"]
