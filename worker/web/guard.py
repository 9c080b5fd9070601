"""What every request passes before the API sees it: the bearer token or basic-auth
credentials, read-only mode, and the body size limit. Pure ASGI middleware, so a refusal
costs no routing and a body that is too large is never read whole."""

from __future__ import annotations

import base64
import binascii
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


async def refuse(
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


def _basic(header: bytes) -> tuple[bytes, bytes] | None:
    """The user and password of an ``Authorization: Basic ...`` header (None: not one)."""
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


class Guard:
    """Refuses, before the app: a request without the bearer ``token`` or the ``basic``
    ``(user, password)`` (when either is set, either one lets a request in: 401), an action
    in ``read_only`` mode (403), a body over ``max_body_bytes`` (413)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        read_only: bool,
        max_body_bytes: int = MAX_BODY_BYTES,
        basic: tuple[str, str] | None = None,
    ) -> None:
        self.app = app
        self._expected = None if token is None else f"Bearer {token}".encode()
        self._basic = None if basic is None else (basic[0].encode(), basic[1].encode())
        self.read_only = read_only
        self.max_body_bytes = max_body_bytes

    def _authorized(self, header: bytes) -> bool:
        """Whether ``header`` carries the token or the credentials (each compared in
        constant time, both parts of the credentials always)."""
        if self._expected is None and self._basic is None:
            return True
        if self._expected is not None and hmac.compare_digest(header, self._expected):
            return True
        if self._basic is not None:
            given = _basic(header) or (b"", b"")
            user_ok = hmac.compare_digest(given[0], self._basic[0])
            password_ok = hmac.compare_digest(given[1], self._basic[1])
            return user_ok and password_ok
        return False

    def _challenge(self) -> tuple[str, tuple[tuple[bytes, bytes], ...]]:
        if self._basic is not None:
            detail = "this server needs its credentials (basic authentication)"
            if self._expected is not None:
                detail += " or its token (Authorization: Bearer <token>)"
            return detail, ((b"www-authenticate", b'Basic realm="worker-queue", charset="UTF-8"'),)
        return (
            "this server needs its token: send the header Authorization: Bearer <token>",
            ((b"www-authenticate", b'Bearer realm="worker-queue"'),),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not self._authorized(headers.get(b"authorization", b"")):
            detail, challenge = self._challenge()
            await refuse(send, 401, detail, challenge)
            return
        if self.read_only and scope["method"] in ACTIONS:
            await refuse(send, 403, "this server is read-only (wq web --read-only)")
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await refuse(send, 413, f"request body over {self.max_body_bytes} bytes")
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
                await refuse(send, 413, f"request body over {self.max_body_bytes} bytes")

        try:
            await self.app(scope, counting, replacing)
        except TooLarge:
            if not refused:
                await refuse(send, 413, f"request body over {self.max_body_bytes} bytes")
