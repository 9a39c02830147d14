"""A gate in front of the local broker that can stop new events while reads go on.

Why: the embedded default's broker keeps events in memory, so a clean stop of `up` reads it to its end
and then kills it. A model service that keeps logging meanwhile has events acknowledged between that
last read and the kill, and those died unread (CI saw 3-6 per stop). With the gate closed first, the
broker acknowledges nothing new, and the log end the collector reads to is final. A held produce
request is never forwarded nor answered: its producer sends it again to the next `up`.

Every client reaches the broker through the gate (the broker advertises the gate's address), so the
gate sees each request whole. It reads only request headers (and, for Produce, the `acks` field) and
the correlation id of each response; payloads pass untouched.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections import deque

log = logging.getLogger(__name__)

PRODUCE = 0  # the Kafka API key of Produce requests
FIRST_FLEXIBLE_PRODUCE = 9  # from this version on, Produce headers carry tagged fields and compact strings
_CHUNK = 1 << 18


def _uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def read_request(frame: bytes | memoryview) -> tuple[int, int, bool]:
    """(api key, correlation id, whether the broker answers it) of one request frame, length prefix removed.

    Only a Produce request with acks=0 goes unanswered. A frame too short or malformed to read counts as
    answered: the broker replies to it (with an error) or closes the connection, either of which ends it.
    """
    try:
        api_key, version, correlation = struct.unpack_from(">hhi", frame, 0)
    except struct.error:
        return -1, -1, True
    if api_key != PRODUCE:
        return api_key, correlation, True
    try:
        (client_id,) = struct.unpack_from(">h", frame, 8)
        pos = 10 + max(client_id, 0)
        if version >= FIRST_FLEXIBLE_PRODUCE:
            tags, pos = _uvarint(frame, pos)
            for _ in range(tags):
                _, pos = _uvarint(frame, pos)
                size, pos = _uvarint(frame, pos)
                pos += size
            transactional, pos = _uvarint(frame, pos)  # compact nullable string: length + 1, 0 for null
            pos += max(transactional - 1, 0)
        elif version >= 3:
            (transactional,) = struct.unpack_from(">h", frame, pos)
            pos += 2 + max(transactional, 0)
        (acks,) = struct.unpack_from(">h", frame, pos)
    except (struct.error, IndexError):
        return api_key, correlation, True
    return api_key, correlation, acks != 0


class _Link:
    """One client connection and its connection to the broker."""

    def __init__(self) -> None:
        self.unanswered: deque[int] = deque()  # produce requests forwarded and not yet answered, in order
        self._head = bytearray()  # a response's length and correlation id, when split across reads
        self._rest = 0  # bytes of the current response still to pass

    def answered(self, data: bytes) -> None:
        """Follow response frames through `data`, dropping each answered correlation id."""
        i, n = 0, len(data)
        while i < n:
            if self._rest:
                step = min(self._rest, n - i)
                self._rest -= step
                i += step
                continue
            take = data[i:i + 8 - len(self._head)]
            self._head += take
            i += len(take)
            if len(self._head) == 8:
                size, correlation = struct.unpack(">ii", self._head)
                self._head.clear()
                self._rest = max(size - 4, 0)
                if correlation in self.unanswered:  # responses come in request order
                    while self.unanswered.popleft() != correlation:
                        pass


class ProduceGate:
    """A TCP relay on host:port to the broker at upstream; `hold_produce()` stops new events there."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int]) -> None:
        self.host, self.port, self.upstream = host, port, upstream
        self.holding = False
        self.held = 0  # produce requests held since the gate closed
        self._links: set[_Link] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Future[None]] = set()
        self._relays: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._reopened = asyncio.Event()  # a new one per hold, set by the release() that ends it

    def start(self) -> "ProduceGate":
        ready: list[BaseException | None] = []
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
                ready.append(None)
            except BaseException as exc:  # the port is taken: reported by start()
                ready.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="produce-gate", daemon=True)
        self._thread.start()
        started.wait()
        if ready[0] is not None:
            raise ready[0]
        return self

    def hold_produce(self, timeout: float = 5.0) -> bool:
        """From now on hold every new produce request; return once the broker answered those it was given.

        True when it did within `timeout`: everything it acknowledged is then in its log, and its log end
        moves no further.
        """
        if self._loop is None:
            return True
        future = asyncio.run_coroutine_threadsafe(self._close(timeout), self._loop)
        return future.result(timeout + 5)

    async def _close(self, timeout: float) -> bool:
        if not self.holding:
            self._reopened = asyncio.Event()
        self.holding = True
        deadline = time.monotonic() + timeout
        while any(link.unanswered for link in self._links):
            if time.monotonic() > deadline:
                log.error("the local broker did not answer every produce request it was given before the stop",
                          extra={"unanswered": sum(len(link.unanswered) for link in self._links)})
                return False
            await asyncio.sleep(0.002)
        return True

    def release(self) -> None:
        """Let produce requests through again; each connection that had one held is closed (and resent)."""
        if self._loop is None:
            return

        async def reopen() -> None:
            self.holding = False
            self._reopened.set()

        asyncio.run_coroutine_threadsafe(reopen(), self._loop).result(5)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            for pump in list(self._pumps):  # each relay then ends by itself (asyncio logs a cancelled one)
                pump.cancel()
            await asyncio.gather(*self._relays, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5)
        if self.held:
            log.info("produce requests held at the stop; their producers send them to the next start",
                     extra={"held": self.held})

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        try:
            broker_in, broker_out = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_out.close()
            return
        link = _Link()
        relay = asyncio.current_task()
        assert relay is not None
        self._links.add(link)
        self._relays.add(relay)
        self._writers.update((client_out, broker_out))
        pumps = [asyncio.ensure_future(self._requests(link, client_in, broker_out)),
                 asyncio.ensure_future(self._responses(link, broker_in, client_out))]
        self._pumps.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._pumps.discard(pump)
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_out, broker_out):
                writer.close()
                self._writers.discard(writer)
            self._links.discard(link)
            self._relays.discard(relay)

    async def _requests(self, link: _Link, source: asyncio.StreamReader, broker: asyncio.StreamWriter) -> None:
        """Forward whole request frames; once holding, a produce request stops this connection's requests."""
        pending = bytearray()
        while True:
            data = await source.read(_CHUNK)
            if not data:
                return
            pending += data
            start, held, reopened = 0, False, self._reopened
            with memoryview(pending) as view:  # released before `pending` is resized
                while len(view) - start >= 4:
                    (size,) = struct.unpack_from(">i", view, start)
                    if size < 0:
                        return  # not Kafka: the broker would drop it too
                    end = start + 4 + size
                    if len(view) < end:
                        break
                    api_key, correlation, answered = read_request(view[start + 4:end])
                    if api_key == PRODUCE and self.holding:
                        held, reopened = True, self._reopened  # this hold's: set by the release that ends it
                        break
                    if answered and api_key == PRODUCE:  # only a produce request moves the log end; a
                        link.unanswered.append(correlation)  # fetch may wait its max wait before it is answered
                    start = end
            if start:
                broker.write(bytes(pending[:start]))
                del pending[:start]
                await broker.drain()
            if held:
                self.held += 1
                await reopened.wait()  # nothing more from this client until release() or the gate's stop
                return  # the relay closes the connection: the producer sends the held request again

    async def _responses(self, link: _Link, source: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        while True:
            data = await source.read(_CHUNK)
            if not data:
                return
            link.answered(data)
            client.write(data)
            await client.drain()

