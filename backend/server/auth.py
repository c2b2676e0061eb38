"""The guard in front of every route: Host header, bearer token, body size (a pure ASGI middleware).

Checks, in this order, before any route code runs or any body byte is read:

1. Host: the ``Host`` header must be one of ``ServerConfig.allowed_hosts()`` (the bound address with its
   port, or ``localhost:<port>`` on loopback), else 400. This blocks DNS rebinding: a web page whose
   name resolves to 127.0.0.1 still sends its own name.
2. Token: every path but ``/v1/health`` and the OpenAPI pages (``PUBLIC_PATHS``) needs
   ``Authorization: Bearer <token>``, compared with ``hmac.compare_digest``, else 401 with
   ``WWW-Authenticate: Bearer``. Checked here rather than in a FastAPI dependency because FastAPI parses
   a form body before it solves dependencies; a client without the token must not get an upload parsed.
3. Body size: a ``Content-Length`` above ``max_body`` is refused at once with 413; the bytes actually
   received are counted as well (chunked uploads, lying headers) and the request fails with 413 as soon
   as they pass the limit.

Answers are FastAPI-shaped: ``{"detail": "message"}``. There is no CORS middleware: browsers get no
``Access-Control-Allow-*`` header, so no web page can read an answer.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PUBLIC_PATHS = frozenset({"/v1/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
"""Paths answered without a token: the health check, and the API description (no data, no work)."""


class BodyTooLarge(HTTPException):
    """The request body passed the size limit while it was being received (answered with 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {_megabytes(limit)}")


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (constant-time comparison).

    >>> token_matches("Bearer s3cret", "s3cret"), token_matches("bearer s3cret", "s3cret")
    (True, True)
    >>> token_matches("Bearer wrong", "s3cret"), token_matches(None, "s3cret")
    (False, False)
    >>> token_matches("s3cret", "s3cret")
    False
    """
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8"), token.encode("utf-8"))


class GuardMiddleware:
    """ASGI middleware applying the checks of the module docstring to every HTTP request.

    Args:
        app: the wrapped application.
        allowed_hosts: returns the accepted Host values (lower case, with port), or None for any.
        token: the bearer token.
        max_body: the body limit in bytes.
    """

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Callable[[], frozenset[str] | None],
        token: str,
        max_body: int,
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        allowed = self.allowed_hosts()
        host = headers.get("host", "").strip().lower()
        if allowed is not None and host not in allowed:
            shown = host or "(none)"
            await _answer(
                send,
                400,
                f"invalid Host header {shown!r}: this server answers only to {', '.join(sorted(allowed))}",
            )
            return
        if scope["path"] not in PUBLIC_PATHS and not token_matches(headers.get("authorization"), self.token):
            message = (
                "missing bearer token: send 'Authorization: Bearer <token>' (the token is in the state file)"
                if "authorization" not in headers
                else "invalid bearer token"
            )
            await _answer(send, 401, message, {"www-authenticate": "Bearer"})
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await _answer(send, 400, f"invalid Content-Length header {length!r}")
                return
            if int(length) > self.max_body:
                await _answer(send, 413, BodyTooLarge(self.max_body).detail)
                return

        received = 0

        async def counting_receive() -> Message:
            # The body is read inside the routes, where FastAPI answers this HTTPException with a 413.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        await self.app(scope, counting_receive, send)


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _megabytes(size: int) -> str:
    return f"{size / 2**20:g} MB"
