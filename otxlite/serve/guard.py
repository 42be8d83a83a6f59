"""ASGI middleware that checks the API key and the body size before anything reads or parses a body.

Order per request: 401 without the right ``Authorization: Bearer KEY`` on a protected path; 413 when
``Content-Length`` exceeds the limit; then the body is read while its bytes are counted (chunked uploads may carry no
``Content-Length``), 413 as soon as the count passes the limit; only then is the buffered body handed to the app.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def api_key_matches(authorization: str | None, api_key: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <api_key>`` (constant-time comparison)."""
    scheme, _, token = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer ``{"error": message}`` with ``status`` (and ``Connection: close``: the rest of a body is not read)."""
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Refuses unauthenticated requests (401) and oversized bodies (413) before the app sees them."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, api_key: str | None = None,
                 protected_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key
        self.protected_paths = protected_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if (self.api_key is not None and scope["path"] in self.protected_paths
                and not api_key_matches(headers.get("authorization"), self.api_key)):
            await send_error(send, 401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'.",
                             {"WWW-Authenticate": "Bearer"})
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:  # h11 refuses bad values
            await send_error(send, 413, self._too_large(f"{length} bytes"))
            return
        body = await self._read_body(receive, send)
        if body is None:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 413 (or when the client went away)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_error(send, 413, self._too_large(f"more than {self.max_body_bytes} bytes"))
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self, size: str) -> str:
        return (f"the request body ({size}) is over this server's limit of {self.max_body_bytes} bytes "
                "(--max-images x --max-image-mb, base64-encoded).")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the client (disconnect events)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
