"""The embedded store of a running `up`, lent to the CLI beside it.

Why: chDB opens a folder in one process only, so with `up` running every store command (`db status`,
`alerts list`, `silence add`, `reference upload`, `detect`, ...) failed with "in use", and users stopped the
service to upload a reference. Now `up` serves its store on a local socket, and a command that finds the
folder held opens a `ServiceClient` instead: the command runs in its own process as always (its files,
its working directory, its output), and only its queries run inside `up`, on a client of their own.

The credential is a random key in `store.key` inside the data folder, readable by its owner only
(mode 0600): `multiprocessing.connection` proves knowledge of it (HMAC challenge) before any request is
read. Whoever can read that file can already read the chDB folder beside it. On Linux the socket has an
abstract name (no path length limit, nothing left behind by a kill); elsewhere it is `store.sock` in the
folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client as Connect
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError

log = logging.getLogger(__name__)

KEY_FILE = "store.key"
OPERATIONS = frozenset({"query", "command", "insert", "raw_query", "query_df"})


def _address(folder: Path) -> str:
    if sys.platform == "linux":
        return "\0driftline-store-" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:32]
    return str(folder / "store.sock")


class Rows:
    """What the CLI reads of a query's answer (clickhouse-connect's QueryResult, the parts used here)."""

    def __init__(self, column_names: tuple[str, ...], result_rows: list[Any]) -> None:
        self.column_names = column_names
        self.result_rows = result_rows

    @property
    def result_columns(self) -> list[list[Any]]:
        return [list(column) for column in zip(*self.result_rows)] if self.result_rows else [
            [] for _ in self.column_names]

    @property
    def first_row(self) -> Any:
        return self.result_rows[0]

    def named_results(self) -> list[dict[str, Any]]:
        return [dict(zip(self.column_names, row)) for row in self.result_rows]


class StoreService:
    """`up`'s side: answers the store operations of local commands, each connection on its own thread."""

    def __init__(self, folder: Path, open_client: Callable[[], Any]) -> None:
        self.folder = folder
        self._open_client = open_client
        self._key_file = folder / KEY_FILE
        key = secrets.token_bytes(32)
        self._key_file.unlink(missing_ok=True)
        fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        if sys.platform != "linux":
            (folder / "store.sock").unlink(missing_ok=True)
        self._listener = Listener(_address(folder), family="AF_UNIX", authkey=key)
        if sys.platform != "linux":
            os.chmod(folder / "store.sock", 0o600)
        self._closed = False
        threading.Thread(target=self._accept, name="store-service", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection = self._listener.accept()
            except Exception as exc:  # a bad key, a client gone mid-handshake; or the listener closed
                if not self._closed:
                    log.warning("a local command was refused the store", extra={"error": type(exc).__name__})
                continue
            threading.Thread(target=self._serve, args=(connection,), name="store-service-client", daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        client = None
        try:
            while True:
                try:
                    op, args, kwargs = connection.recv()
                except (EOFError, OSError):
                    return
                try:
                    if op not in OPERATIONS:
                        raise ValueError(f"unknown store operation {op!r}")
                    client = client or self._open_client()
                    answer = getattr(client, op)(*args, **kwargs)
                    if op == "query":
                        answer = Rows(tuple(answer.column_names), list(answer.result_rows))
                    elif op in ("command", "insert") and not isinstance(answer, str | int | float | type(None)):
                        answer = None  # a summary object: the CLI does not read it
                    connection.send(("ok", answer))
                except Exception as exc:
                    connection.send(("error", isinstance(exc, DatabaseError), str(exc)))
        finally:
            connection.close()
            if client is not None:
                client.close()

    def close(self) -> None:
        self._closed = True
        self._key_file.unlink(missing_ok=True)
        self._listener.close()


class ServiceClient:
    """A command's side: the store operations of a clickhouse-connect client, run by `up` (see above)."""

    def __init__(self, folder: Path, database: str | None) -> None:
        key = (folder / KEY_FILE).read_bytes()
        self._connection = Connect(_address(folder), family="AF_UNIX", authkey=key)
        self.database = database
        self._lock = threading.Lock()

    def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        from driftline.store.client import StoreError

        with self._lock:
            try:
                self._connection.send((op, args, kwargs))
                reply = self._connection.recv()
            except (EOFError, OSError) as exc:
                raise StoreError(f"the running `driftline up` stopped answering ({type(exc).__name__})") from None
        if reply[0] == "ok":
            return reply[1]
        _, is_database_error, message = reply
        raise DatabaseError(message) if is_database_error else StoreError(message)

    def query(self, *args: Any, **kwargs: Any) -> Rows:
        return self._call("query", *args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("command", *args, **kwargs)

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("insert", *args, **kwargs)

    def raw_query(self, *args: Any, **kwargs: Any) -> bytes:
        return self._call("raw_query", *args, **kwargs)

    def query_df(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("query_df", *args, **kwargs)

    def close(self) -> None:
        self._connection.close()


def open_service_client(folder: Path, database: str | None) -> ServiceClient | None:
    """A client through the `up` that holds `folder`, or None when none serves it (no key, nobody listening)."""
    if not (folder / KEY_FILE).exists():
        return None
    try:
        return ServiceClient(folder, database)
    except (OSError, EOFError, AuthenticationError) as exc:  # a key left by a killed `up`, or one stopping
        log.debug("no store service", extra={"folder": str(folder), "error": type(exc).__name__})
        return None
