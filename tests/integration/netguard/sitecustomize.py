"""Refuses, and records, every network connection that does not stay on this machine.

Put on PYTHONPATH (with DRIFTLINE_NET_GUARD_LOG naming a file), it is
imported by every Python process started from there: the guarded process and
its Python children. Name lookups of anything but localhost and connections to
anything but loopback fail with an OSError and leave one line in the log, so
a test can prove a run reached nothing outside, even where it cannot take the
network away (no `unshare -n`).
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOG = os.environ.get("DRIFTLINE_NET_GUARD_LOG", "")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {what}\n")


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if host is not None and not _is_loopback(host):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {host!r} refused")
    return _getaddrinfo(host, *args, **kwargs)


def _allowed(sock: socket.socket, address: object) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    return isinstance(address, tuple) and _is_loopback(address[0])


def connect(self, address):  # type: ignore[no-untyped-def]
    if not _allowed(self, address):
        _record(f"connect {address!r}")
        raise ConnectionRefusedError(f"network guard: connection to {address!r} refused")
    return _connect(self, address)


def connect_ex(self, address):  # type: ignore[no-untyped-def]
    if not _allowed(self, address):
        _record(f"connect_ex {address!r}")
        return 111  # ECONNREFUSED
    return _connect_ex(self, address)


if _LOG:
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
