"""``wq web``: serve the HTTP API, ``/metrics`` and the overview page (the ``web`` extra).

Binds 127.0.0.1 by default. Beyond loopback it needs a token (``--token`` or
``QUEUE_WEB_TOKEN``) or basic-auth credentials (``--user`` or ``QUEUE_WEB_USER``, with
``QUEUE_WEB_PASSWORD``), and then every request must carry one of them; without either it
refuses to start. ``QUEUE_WEB_CSRF_SECRET`` signs the pages' CSRF tokens, so that several
``wq web`` processes behind one address accept each other's. ``--read-only`` opens the
database read-only, refuses every action and shows none in the pages.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.session import run, usage_error

if TYPE_CHECKING:
    from worker.queue.worker_queue import WorkerQueue


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        usage_error(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(True)
    return sock


def serve_web(
    ctx: typer.Context,
    *,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")
    ] = 8000,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Refuse every action; open the database read-only.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", metavar="TOKEN", help="Bearer token every request needs [QUEUE_WEB_TOKEN]."
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            metavar="NAME",
            help="Basic-auth user, with the password in QUEUE_WEB_PASSWORD [QUEUE_WEB_USER].",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API, /metrics and the pages until Ctrl-C or SIGTERM."""
    import asyncio  # not at wq's start: --help needs no event loop
    import signal

    try:
        import uvicorn

        from worker.web import create_app
        from worker.web.guard import is_loopback
    except ImportError as exc:
        usage_error(f"wq web needs the web extra: pip install 'worker-queue[web]' ({exc})")
    if token is not None and not token.strip():
        usage_error("--token must not be empty or only spaces")
    if user == "" or (user is not None and ":" in user):
        usage_error("--user must be a name without ':'")

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Stop on SIGINT or SIGTERM and exit 0, rather than uvicorn's re-raising them.
            loop = asyncio.get_running_loop()
            stops = (signal.SIGINT, signal.SIGTERM)
            for number in stops:
                loop.add_signal_handler(number, self.handle_exit, number, None)
            try:
                yield
            finally:
                for number in stops:
                    loop.remove_signal_handler(number)

    async def act(queue: WorkerQueue) -> None:
        secret = token
        if secret is None and queue.config.web_token is not None:
            secret = queue.config.web_token.get_secret_value() or None
            if secret is not None and not secret.strip():
                usage_error("QUEUE_WEB_TOKEN must not be only spaces")
        name = user if user is not None else queue.config.web_user or None
        password = queue.config.web_password
        phrase = None if password is None else password.get_secret_value() or None
        if name is not None and phrase is None:
            usage_error(f"basic auth for {name!r} needs its password in QUEUE_WEB_PASSWORD")
        if name is None and phrase is not None:
            usage_error("QUEUE_WEB_PASSWORD is set but no user: pass --user or QUEUE_WEB_USER")
        if name is not None and ":" in name:
            usage_error("QUEUE_WEB_USER must be a name without ':'")
        if secret is None and name is None and not is_loopback(host):
            usage_error(
                f"refusing to listen on {host} without a token or a password: anyone who "
                "reaches it could steer the queue; set QUEUE_WEB_TOKEN or pass --token, or "
                "--user with QUEUE_WEB_PASSWORD (or listen on 127.0.0.1)"
            )
        sock = _listen(host, port)
        signing = queue.config.web_csrf_secret
        app = create_app(
            queue,
            read_only=read_only,
            token=secret,
            user=name,
            password=phrase,
            csrf_secret=None if signing is None else signing.get_secret_value().encode(),
        )
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        shown = f"[{host}]" if ":" in host else host
        typer.echo(
            f"wq web: serving on http://{shown}:{sock.getsockname()[1]}"
            f"{' (read-only)' if read_only else ''}{' (token required)' if secret else ''}"
            f"{' (basic auth)' if name else ''}",
            err=True,
        )
        try:
            await Server(config).serve(sockets=[sock])
        finally:
            sock.close()

    run(ctx, act, "read" if read_only else "write")
