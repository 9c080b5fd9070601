"""What every request passes before the API sees it: the bearer token, read-only mode,
and the body size limit. Pure ASGI middleware, so a refusal costs no routing and a body
that is too large is never read whole."""

from __future__ import annotations

import hmac
import ipaddress
import json
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.web.problems import MEDIA_TYPE

#: The largest request body accepted, by default (a batch of a thousand small tasks fits).
MAX_BODY_BYTES = 1024 * 1024
#: Methods that change something: refused in read-only mode.
ACTIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine; a name
    other than ``localhost`` counts as not, since it may resolve to anything."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TooLarge(Exception):
    """The request body passed the limit while it was being read."""


async def _refuse(
    send: Send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps(
        {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
         "detail": detail}
    ).encode()  # fmt: skip
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Refuses, before the app: a request without the bearer ``token`` (when one is set:
    401), an action in ``read_only`` mode (403), a body over ``max_body_bytes`` (413)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        read_only: bool,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self._expected = None if token is None else f"Bearer {token}".encode()
        self.read_only = read_only
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self._expected is not None and not hmac.compare_digest(
            headers.get(b"authorization", b""), self._expected
        ):
            await _refuse(
                send,
                401,
                "this server needs its token: send the header Authorization: Bearer <token>",
                ((b"www-authenticate", b'Bearer realm="worker-queue"'),),
            )
            return
        if self.read_only and scope["method"] in ACTIONS:
            await _refuse(send, 403, "this server is read-only (wq web --read-only)")
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _refuse(send, 413, f"request body over {self.max_body_bytes} bytes")
            return
        await self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, counting the body as it arrives (a chunked body has no length).

        Past the limit, reading the body raises :class:`TooLarge`; whatever the app answers
        then (FastAPI turns a failed read into a 400) is replaced by the 413."""
        seen = 0
        exceeded = False
        refused = False

        async def counting() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    exceeded = True
                    raise TooLarge
            return message

        async def replacing(message: Message) -> None:
            nonlocal refused
            if not exceeded:
                await send(message)
            elif not refused:
                refused = True
                await _refuse(send, 413, f"request body over {self.max_body_bytes} bytes")

        try:
            await self.app(scope, counting, replacing)
        except TooLarge:
            if not refused:
                await _refuse(send, 413, f"request body over {self.max_body_bytes} bytes")
