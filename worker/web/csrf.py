"""Cross-site request forgery: the rule every action (POST) passes, and the tokens pages
carry (double submit, signed).

The threat: a page on another site makes the browser of someone who can reach this server
(on loopback, or with basic-auth credentials the browser sends by itself) post a form to it.
A browser sends such a cross-site post with a form's content types only
(``application/x-www-form-urlencoded``, ``multipart/form-data``, ``text/plain``); any other
content type, ``application/json`` among them, needs a CORS preflight first, which this app
never grants. So an action is let through when:

- it carries ``Authorization: Bearer ...`` (an API client: no browser adds that header by
  itself; basic credentials, which a browser does resend, are not exempt), or
- its content type is ``application/json``, or
- it has no body and no content type (``curl -X POST .../cancel``): no form sends that,
  and a script on another site that does is caught by the next rule, or
- it carries the CSRF token, in the ``X-CSRF-Token`` header or the form field
  ``csrf_token``, equal to the token in the ``wq_csrf`` cookie, and signed with this app's
  secret (so a cookie planted by a neighbouring site does not pass);

and in every case, when an ``Origin`` header comes with it, that origin is this server's
(scheme, host and port of the request), and when a ``Sec-Fetch-Site`` header comes with
it, it says ``same-origin`` (or ``none``: typed by the user). Browsers add ``Origin`` to
every POST, and ``Sec-Fetch-Site`` to every request, so a cross-site post is refused even
before its token is looked at. Anything else is refused with a 403 problem document
before the app sees it.

Pages render :func:`token_for` (the cookie's token, or a new one the response sets as the
cookie) into ``<meta name="csrf-token">`` and each form's hidden ``csrf_token``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.web.guard import ACTIONS, refuse

#: The cookie that holds the token.
COOKIE = "wq_csrf"
#: The header and the form field that carry it back.
HEADER = b"x-csrf-token"
FIELD = "csrf_token"
_NEW = "csrf_new_token"


class CsrfTokens:
    """Tokens ``<nonce>.<HMAC-SHA256 of the nonce>`` under one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the CSRF secret must be at least 16 bytes")
        self._secret = secret

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: str) -> bool:
        nonce, dot, signature = token.partition(".")
        return bool(dot) and hmac.compare_digest(signature, self._sign(nonce))


def _cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:  # a cookie header we cannot parse holds no token
                continue
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def token_for(request: Request) -> str:
    """The token a page renders: the request's cookie's when it is valid, else a new one
    (which the response sets as the cookie)."""
    tokens: CsrfTokens = request.app.state.csrf
    current = _cookie(request.scope["headers"])
    if current is not None and tokens.valid(current):
        return current
    fresh: str | None = request.scope.setdefault("state", {}).get(_NEW)
    if fresh is None:
        fresh = tokens.issue()
        request.scope["state"][_NEW] = fresh
    return fresh


def _media_type(headers: dict[bytes, bytes]) -> str:
    return headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")


def _origin(scheme: str, netloc: str) -> str:
    """``scheme://host[:port]`` in lower case, without the scheme's default port."""
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    netloc = netloc.lower()
    if default and netloc.endswith(default):
        netloc = netloc[: -len(default)]
    return f"{scheme}://{netloc}"


def _same_origin(origin: bytes, scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """Whether ``origin`` is this server's: the request's scheme and ``Host``."""
    parts = urlsplit(origin.decode("latin-1").strip().lower())
    own = _origin(str(scope.get("scheme", "http")), headers.get(b"host", b"").decode("latin-1"))
    return bool(parts.netloc) and _origin(parts.scheme, parts.netloc) == own


class Csrf:
    """The rule of the module docstring, as ASGI middleware around the app; sets the
    cookie of a token a page issued."""

    def __init__(self, app: ASGIApp, tokens: CsrfTokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        if scope["method"] in ACTIONS:
            refusal, receive = await self._check(scope, receive)
            if refusal is not None:
                await refuse(send, 403, refusal)
                return
        await self.app(scope, receive, self._setting_cookie(scope, send))

    def _setting_cookie(self, scope: Scope, send: Send) -> Send:
        async def sending(message: Message) -> None:
            fresh = scope["state"].get(_NEW)
            if message["type"] == "http.response.start" and fresh is not None:
                path = scope.get("root_path") or "/"
                secure = "; Secure" if scope.get("scheme") == "https" else ""
                cookie = f"{COOKIE}={fresh}; Path={path}; SameSite=Strict; HttpOnly{secure}"
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())],
                }
            await send(message)

        return sending

    async def _check(self, scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
        """Why this action is refused (None: it is not), and the ``receive`` to run it
        with (a form's body, read here to find its token, is handed on as it came)."""
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is not None and not _same_origin(origin, scope, headers):
            return f"cross-origin action refused (Origin: {origin.decode('latin-1')})", receive
        fetch_site = headers.get(b"sec-fetch-site", b"same-origin").lower()
        if fetch_site not in (b"same-origin", b"none"):
            return f"cross-site action refused (Sec-Fetch-Site: {fetch_site.decode()})", receive
        if headers.get(b"authorization", b"").lower().startswith(b"bearer "):
            return None, receive
        media_type = _media_type(headers)
        if media_type == "application/json":
            return None, receive
        if not media_type and headers.get(b"content-length", b"0") == b"0":
            return None, receive  # no body: no form sends that (see the module docstring)
        submitted = headers.get(HEADER, b"").decode("latin-1") or None
        if submitted is None and media_type == "application/x-www-form-urlencoded":
            body, receive = await _read_body(receive)
            fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
            submitted = fields.get(FIELD, [""])[0] or None
        cookie = _cookie(scope["headers"])
        if submitted is None or cookie is None:
            return (
                "this action needs its CSRF token (reload the page), or a JSON body, or a "
                "bearer token",
                receive,
            )
        if not (hmac.compare_digest(submitted, cookie) and self.tokens.valid(cookie)):
            return "the CSRF token does not match (reload the page)", receive
        return None, receive


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body, and a ``receive`` that hands it on again."""
    chunks: list[bytes] = []
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return b"".join(chunks), replay


def form_fields(body: bytes) -> dict[str, list[str]]:
    """A urlencoded form's fields (UTF-8), each with every value it was given."""
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
