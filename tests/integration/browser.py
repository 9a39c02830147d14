"""Headless Chromium for the tests, driven over the DevTools protocol on a pipe, and a PNG reader; stdlib only.

Chromium is the Debian package (`apt-get install chromium`); nothing is
downloaded at run time. `--remote-debugging-pipe` speaks the DevTools
protocol (JSON messages ending in a NUL byte) on the browser's fds 3 and 4,
so the test needs no driver binary and no WebSocket client: it can click the
report's rows open (the Plotly charts of Evidently's report are rendered only
in a row's detail panel), then take the screenshot and the DOM.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

INSTALL = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium"
CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")


def chromium_binary() -> str:
    """The Chromium to run, or an AssertionError that says how to install it (the tests never skip for it)."""
    found = os.environ.get("DRIFTLINE_TEST_CHROMIUM") or next(
        (p for p in (shutil.which(c) for c in CANDIDATES) if p), None)
    ci = " (CI: .ci/run installs it before the tests)" if os.environ.get("CI") else ""
    assert found, f"headless Chromium is required by this test and was not found{ci}; install it: {INSTALL}"
    return found


class Browser:
    """One headless Chromium and one page, `width` x `height` CSS pixels."""

    def __init__(self, log: Path, *, width: int = 1400, height: int = 3000, binary: str | None = None) -> None:
        self.width, self.height = width, height
        child_in, self._out = os.pipe()  # we write commands to _out; Chromium reads them on its fd 3
        self._in, child_out = os.pipe()  # Chromium writes replies on its fd 4; we read them from _in
        # Above 9, and close-on-exec here: only the trampoline's dup2 hands them on, as 3 and 4.
        r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (child_in, child_out))
        os.close(child_in)
        os.close(child_out)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
                 "--remote-debugging-pipe", f"--window-size={width},{height}", f"--user-data-dir={log.parent / 'chromium-profile'}",
                 "about:blank"]
        trampoline = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
                      "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")
        self._log = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-c", trampoline, str(r), str(w), binary or chromium_binary(),
                                      *flags], pass_fds=(r, w), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        os.close(r)
        os.close(w)
        self._buffer = b""
        self._next_id = 0
        self.session = ""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    assert "error" not in reply, f"{method}: {reply['error']}"
                    return reply["result"]
            assert time.monotonic() < deadline, f"Chromium did not answer {method} within {timeout} s"
            chunk = os.read(self._in, 1 << 20)
            assert chunk, f"Chromium exited (code {self.proc.poll()}); see {self._log.name}"
            self._buffer += chunk

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def open(self, url: str) -> None:
        navigated = self.call("Page.navigate", {"url": url})
        assert "errorText" not in navigated, navigated
        self.wait("the page to load", "document.readyState === 'complete'")

    def wait(self, what: str, condition: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(condition)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what} ({condition})"
            time.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))
        return path

    def dom(self) -> str:
        return str(self.js("document.documentElement.outerHTML"))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._in, self._out):
            os.close(fd)
        self._log.close()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced truecolour PNG: what Chromium writes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0], kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None, "no IHDR chunk"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    assert len(raw) == (stride + 1) * height, "truncated image data"
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        else:
            assert kind == 0, f"unknown PNG filter {kind} in row {y}"
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def distinct_colours(path: Path) -> int:
    width, _, rows = png_pixels(path)
    bpp = len(rows[0]) // width
    return len({row[i:i + 3] for row in rows for i in range(0, len(row), bpp)})
