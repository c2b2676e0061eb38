"""Connection timeouts for uvicorn: no connection may sit silent on the server forever.

uvicorn's own ``timeout_keep_alive`` closes a keep-alive connection only once a response has been
sent; a client that opens a connection and sends nothing, or half a request head, or stops in the
middle of a body, holds its socket (and, for a body, a task of the app) for good.
``idle_timeout_protocol(seconds)`` returns uvicorn's h11 protocol with one more timer: re-armed by
every byte received and every response sent, it closes the connection after ``seconds`` of silence
unless the server itself is still working on a complete request (a long-poll, a cancel that waits) --
that is, between requests (keep-alive), during an unfinished head, and during a stalled body.

Pass it as ``uvicorn.Config(http=idle_timeout_protocol(seconds), timeout_keep_alive=...)``; it uses
the pure-Python h11 parser whatever else is installed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def idle_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with the idle timeout of the module docstring."""
    if seconds <= 0:
        raise ValueError(f"the idle timeout must be positive, got {seconds}")

    class IdleTimeoutProtocol(H11Protocol):
        idle_timeout = seconds

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._idle_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_idle_timer()

        def data_received(self, data: bytes) -> None:
            self._arm_idle_timer()
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_idle_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_idle_timer()
            super().connection_lost(exc)

        def _cancel_idle_timer(self) -> None:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None

        def _arm_idle_timer(self) -> None:
            self._cancel_idle_timer()
            self._idle_timer = self.loop.call_later(self.idle_timeout, self._on_idle)

        def _on_idle(self) -> None:
            self._idle_timer = None
            if self.transport.is_closing():
                return
            in_request = self.cycle is not None and not self.cycle.response_complete
            if in_request and self.conn.their_state in (h11.DONE, h11.MUST_CLOSE):
                self._arm_idle_timer()  # the whole request is here: the app is working on it
                return
            self.transport.close()  # silent between requests, in a request head, or mid-body

    return IdleTimeoutProtocol
