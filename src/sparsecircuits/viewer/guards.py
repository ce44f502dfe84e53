"""What every request passes before it reaches a route: a Host check and a body size limit.

- Host check: a web page on another site can make the browser send requests to
  `127.0.0.1:PORT` by pointing its own name at 127.0.0.1 (DNS rebinding); the browser then
  treats the answers as same-origin. Such requests carry the attacker's name in the `Host`
  header, so only loopback names (`127.0.0.1`, `localhost`, `[::1]`, any port) and the names
  the server was started for are answered; anything else is a 400.
- Body limit: a request body larger than `MAX_BODY_BYTES` is a 413, answered from the
  `Content-Length` header before any of the body is read, or as soon as a body sent without
  one (chunked) passes the limit; it is never buffered whole.

Both are plain ASGI middleware, so they run before FastAPI parses anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 2**20
"""Largest request body accepted (1 MiB): the biggest real one, a 20,000-character text with
64 interventions, is about a tenth of it."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-fA-F:.]+)\]|(?P<name>[^:\[\]]+))(?::[0-9]{1,5})?")


def host_name(header: str) -> str | None:
    """The host of a `Host` header without its port, lower-cased; None if malformed.

    'LocalHost:8765' -> 'localhost', '[::1]:8765' -> '::1', 'a:b:c' -> None.
    """
    m = _HOST.fullmatch(header.strip())
    if not m:
        return None
    return (m["ip6"] or m["name"]).lower().rstrip(".")


def allowed_hosts(configured: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names plus the configured ones (a bare or bracketed IPv6 literal, a name)."""
    extra = {h.strip().strip("[]").lower().rstrip(".") for h in configured if h and h.strip()}
    return LOOPBACK_HOSTS | extra


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class HostCheck:
    """Answer only requests whose `Host` header names an allowed host (400 otherwise)."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]):
        self.app = app
        self.hosts = frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            raw = headers.get(b"host", b"").decode("latin-1")
            if host_name(raw) not in self.hosts:
                await _send_error(send, 400, f"invalid Host header {raw[:100]!r}: this viewer "
                                             "answers only requests addressed to a loopback host")
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, without reading them."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body larger than {self.limit} bytes"
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _send_error(send, 400, "malformed Content-Length header")
                return
            if len(length) > 18 or int(length) > self.limit:  # int() of 5000 digits raises
                await _send_error(send, 413, too_large)
                return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answer now; the route then sees a disconnect and its answer is dropped.
                    refused = True
                    if not started:
                        await _send_error(send, 413, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:  # a route failing on the disconnect we made it see is expected
                raise
