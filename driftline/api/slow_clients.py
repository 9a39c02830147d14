"""A deadline for reading each request, so a slow or stalled client cannot hold a connection forever.

uvicorn times out idle keep-alive connections, but nothing bounds a request
that is still arriving: a client that sends half a header, or a body one
byte a minute, keeps its connection (and, for a body, a worker waiting in
`request.body()`) as long as it likes; a few hundred such clients starve the
API. This protocol gives every request `seconds` from its first byte (or the
connection's start) to be read whole; a request still incomplete then gets
its connection closed, and the handler waiting for its body sees a
disconnect. Time spent answering (a report render, say) is not counted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

_READING = (h11.IDLE, h11.SEND_BODY)  # the client's side of h11: still sending the request (IDLE: its head)


def with_read_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request is not read whole within `seconds`."""

    class DeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in _READING and not self.transport.is_closing():
                self._arm()  # a request is arriving: armed once, at its first byte, not re-armed per byte
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing() or self.conn.their_state not in _READING:
                return
            if self.conn.their_state is h11.IDLE and self.timeout_keep_alive_task is not None:
                return  # idle between requests: uvicorn's keep-alive timeout owns that
            client: Any = self.client
            log.warning("closed a connection whose request was not read within the deadline",
                        extra={"client": f"{client[0]}:{client[1]}" if client else "?", "seconds": seconds,
                               "reading": "body" if self.conn.their_state is h11.SEND_BODY else "head"})
            self.transport.close()

    return DeadlineProtocol
