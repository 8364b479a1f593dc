"""Just enough of the Chrome DevTools Protocol to check a page in headless Chromium, using only
the standard library: a WebSocket client (RFC 6455: the HTTP upgrade, masked client text
frames, unmasked server frames, ping/pong, close) and a JSON-RPC layer over it.

Every wait is bounded by a deadline, so a stuck browser fails a test instead of hanging it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
)
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def find_chromium() -> str | None:
    """``/usr/bin/chromium`` or ``chromium`` on PATH, else None."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


# --------------------------------------------------------------------------------------------
# WebSocket
# --------------------------------------------------------------------------------------------


class WebSocket:
    """A blocking ``ws://`` client for text messages."""

    def __init__(self, url: str, timeout: float = 30.0):
        parts = urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname or not parts.port:
            raise ValueError(f"not a ws://host:port/ URL: {url!r}")
        self._buffer = b""
        self._sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self._sock.sendall(request.encode())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._buffer:
            self._fill(deadline)
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not re.match(r"HTTP/1\.1 101\b", lines[0]):
            raise ConnectionError(f"WebSocket upgrade refused: {lines[0]!r}")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != accept:
            raise ConnectionError("WebSocket upgrade: wrong Sec-WebSocket-Accept")

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("WebSocket: timed out waiting for data")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("WebSocket: timed out waiting for data") from None
        if not chunk:
            raise ConnectionError("WebSocket: connection closed by the server")
        self._buffer += chunk

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self._buffer) < n:
            self._fill(deadline)
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])  # FIN, no extensions
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])  # the mask bit: a client masks every frame
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        # XOR with the repeated 4-byte key, done on whole integers for speed.
        repeated = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
        self._sock.sendall(header + mask + masked)

    def send_text(self, text: str) -> None:
        self._send_frame(_OP_TEXT, text.encode("utf-8"))

    def recv_text(self, deadline: float) -> str:
        """The next complete text message (fragments joined; pings answered)."""
        message = b""
        while True:
            first, second = self._read(2, deadline)
            fin, opcode = first & 0x80, first & 0x0F
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._read(2, deadline))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._read(8, deadline))
            mask = self._read(4, deadline) if second & 0x80 else None
            payload = self._read(length, deadline)
            if mask:  # servers do not mask, but decoding costs nothing
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == _OP_PING:
                self._send_frame(_OP_PONG, payload)
            elif opcode == _OP_CLOSE:
                raise ConnectionError("WebSocket: the server closed the connection")
            elif opcode in (_OP_TEXT, _OP_BINARY, _OP_CONTINUATION):
                message += payload
                if fin:
                    return message.decode("utf-8")

    def close(self) -> None:
        try:
            self._send_frame(_OP_CLOSE, struct.pack(">H", 1000))
        except OSError:
            pass
        self._sock.close()


# --------------------------------------------------------------------------------------------
# DevTools protocol
# --------------------------------------------------------------------------------------------


class DevTools:
    """JSON-RPC over the browser's WebSocket. Events are kept in ``events`` in arrival order."""

    def __init__(self, url: str, timeout: float = 60.0):
        self.timeout = timeout
        self.ws = WebSocket(url, timeout)
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def call(self, method: str, params: dict | None = None, *, session: str | None = None) -> dict:
        """Send a command and return its result; raise on a protocol error or the timeout."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send_text(json.dumps(message))
        reply = self._receive_until(lambda m: m.get("id") == self._next_id, f"reply to {method}")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, *, session: str | None = None) -> dict:
        """The first event ``method`` (of ``session``) received from now on, or already kept."""
        def match(m: dict) -> bool:
            return m.get("method") == method and (session is None or m.get("sessionId") == session)

        for event in self.events:
            if match(event):
                return event
        return self._receive_until(match, f"event {method}")

    def _receive_until(self, predicate: Callable[[dict], bool], what: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                message = json.loads(self.ws.recv_text(deadline))
            except TimeoutError:
                raise TimeoutError(f"DevTools: no {what} within {self.timeout:.0f} s") from None
            if "method" in message:
                self.events.append(message)
            if predicate(message):
                return message

    def close(self) -> None:
        self.ws.close()


# --------------------------------------------------------------------------------------------
# Chromium processes
# --------------------------------------------------------------------------------------------


def _kill(process: subprocess.Popen) -> None:
    """Kill the browser and every process it started: its own process group, which it leads
    (started with ``start_new_session``), also when the leader has already exited."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@contextmanager
def chromium_devtools(binary: str, profile: Path, *, timeout: float = 60.0,
                      extra: Sequence[str] = ()) -> Iterator[DevTools]:
    """Start headless Chromium with a DevTools port chosen by the system, connect to it, and
    kill the browser on the way out, whatever happened."""
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               "--remote-debugging-port=0", *extra, "about:blank"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    stderr_tail: list[str] = []

    def pump() -> None:  # keep reading stderr so that the browser never blocks on a full pipe
        assert process.stderr is not None
        for raw in process.stderr:
            lines.put(raw.decode("utf-8", "replace"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    devtools = None
    try:
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"chromium printed no DevTools address within {timeout:.0f} s; "
                                   f"stderr: {''.join(stderr_tail[-5:])}") from None
            if line is None:
                raise RuntimeError(f"chromium exited ({process.poll()}) before DevTools was "
                                   f"ready; stderr: {''.join(stderr_tail[-10:])}")
            stderr_tail.append(line)
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            url = found.group(1) if found else None
        devtools = DevTools(url, timeout)
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        _kill(process)


def screenshot(binary: str, profile: Path, url: str, path: Path, *, window: tuple[int, int],
               timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Render ``url`` once with ``--screenshot``; the browser is killed if it overruns."""
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--window-size={window[0]},{window[1]}", "--hide-scrollbars",
               f"--screenshot={path}", url]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise TimeoutError(f"chromium --screenshot did not finish within {timeout:.0f} s") from None
    finally:
        _kill(process)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


# --------------------------------------------------------------------------------------------
# Page checks
# --------------------------------------------------------------------------------------------

IMAGES_JS = """(() => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  return {count: images.length, broken: broken, title: document.title,
          width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight};
})()"""


def open_page(devtools: DevTools) -> str:
    """A fresh tab with the Runtime, Log, Page and Network domains on; returns its session."""
    target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network"):
        devtools.call(f"{domain}.enable", session=session)
    return session


def check_page(devtools: DevTools, session: str, url: str) -> dict[str, Any]:
    """Load ``url`` in the tab, wait for its load event, and report images and errors:
    ``{"count", "broken", "title", "width", "height", "errors"}``, where ``errors`` lists
    exceptions, console errors, error log entries and failed loads seen while it loaded."""
    devtools.events.clear()
    navigation = devtools.call("Page.navigate", {"url": url}, session=session)
    if navigation.get("errorText"):
        raise RuntimeError(f"navigation to {url} failed: {navigation['errorText']}")
    devtools.wait_event("Page.loadEventFired", session=session)
    result = devtools.call("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True},
                           session=session)
    if "exceptionDetails" in result:
        raise RuntimeError(f"evaluating the image check failed: {result['exceptionDetails']}")
    report = dict(result["result"]["value"])
    errors = []
    for event in devtools.events:
        if event.get("sessionId") != session:
            continue
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            errors.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            errors.append(f"console.error: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            errors.append(f"failed load: {params.get('errorText')} ({params.get('type')})")
    report["errors"] = errors
    return report
