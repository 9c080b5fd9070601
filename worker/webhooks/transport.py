"""The HTTP seam: a :class:`Transport` posts bytes and returns the status code.

:class:`HttpxTransport` never follows redirects (a 3xx is the answer, and a failure), never
reads proxies or other settings from the environment, and does not read the response body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

from worker.webhooks.errors import TransportError


@dataclass(frozen=True, slots=True)
class Outgoing:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    sni_hostname: str | None = None


class Transport(Protocol):
    async def post(self, request: Outgoing, timeout_s: float) -> int:
        """POST ``request``; the response's status, or :class:`TransportError`."""
        ...


class HttpxTransport:
    """Posts with one ``httpx.AsyncClient``, usable inside ``async with``.

    The client (and its TLS context, tens of ms to load) is made at the first post: most
    workers never send a webhook.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._open = False

    async def __aenter__(self) -> Self:
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _opened_client(self) -> httpx.AsyncClient:
        if not self._open:
            raise RuntimeError("HttpxTransport is not open: use async with")
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False, transport=self._transport
            )
        return self._client

    async def post(self, request: Outgoing, timeout_s: float) -> int:
        client = self._opened_client()
        extensions: dict[str, Any] = {}
        if request.sni_hostname is not None:
            extensions["sni_hostname"] = request.sni_hostname
        try:
            async with client.stream(
                "POST",
                request.url,
                content=request.body,
                headers=request.headers,
                timeout=timeout_s,
                extensions=extensions,
            ) as response:
                return response.status_code
        except httpx.HTTPError as error:
            raise TransportError(f"{type(error).__name__}: {error}".rstrip(": ")) from error
