"""``python -m worker``: the ``wq`` command line."""

from worker.cli import main

if __name__ == "__main__":
    main()
