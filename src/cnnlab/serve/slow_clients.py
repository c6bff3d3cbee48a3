"""A uvicorn connection protocol that closes connections whose request headers do not arrive in time.

uvicorn times out idle keep-alive connections, but a connection that sends its headers one byte at
a time ("slowloris") is never closed: each byte cancels the keep-alive timer. This subclass of
uvicorn's h11 protocol arms a timer whenever the connection is waiting for a request's headers (on
connect, and when data arrives after the previous response) and closes the transport when it fires
before the headers are complete. Bodies are timed by :class:`cnnlab.serve.app.Guard`, which can
still answer them with a 408.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline of ``header_timeout_s`` for each request's headers."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:  # these bytes start (part of) new headers
            self._arm()
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:  # headers complete: a request runs
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(header_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's ``http`` setting with this header deadline (used by cnnlab.serve.server)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": float(header_timeout_s)})


__all__ = ["HeaderTimeoutProtocol", "protocol_class"]
