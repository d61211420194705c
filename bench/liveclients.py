"""Clients that hold connections open, as a dashboard's browsers do, and record what they saw.

Each WebSocket client connects to a target's ``/updates``, reads until the connection closes, and reconnects; each
event-stream client does the same with ``/activity``. Every connect (with the version the server's hello named),
every disconnect (with its close code, or how the stream ended) and every failed connect is recorded with its time,
so a test can say, per client and per window of time: how often it was cut, how, and where it landed after.

Used by the deploy and faults scenarios and by ``bench/run.py``; it runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

# A browser's EventSource waits a few seconds; a dashboard's WebSocket code about as long. Short here, so that a
# client is connected again before the next host's handover.
RECONNECT_S = 0.2
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Event:
    t: float
    client: str
    kind: str  # ws or sse
    target: str
    what: str  # connect, disconnect, failed
    version: str = ""
    code: int | None = None  # a WebSocket's close code (None: closed without one)
    detail: str = ""


@dataclass
class Client:
    name: str
    kind: str
    target: str
    version: str = ""
    connected: bool = False
    events: list = field(default_factory=list)


class Clients:
    """``ws`` WebSocket and ``sse`` event-stream clients per target (``host:port``), connected until ``stop()``."""

    def __init__(self, targets, ws=4, sse=2, ws_path="/updates", sse_path="/activity", tls_name="", tls_ca=""):
        self.clients = [
            Client(f"{kind}-{target}-{i}", kind, target)
            for target in targets
            for kind, count in (("ws", ws), ("sse", sse))
            for i in range(count)
        ]
        self.ws_path, self.sse_path = ws_path, sse_path
        # Through a front door over TLS: each target is the address reached, ``tls_name`` the host name asked for
        # (SNI, the certificate checked against it, Host), ``tls_ca`` the CA trusted.
        self.tls_name = tls_name
        self.tls = ssl.create_default_context(cafile=tls_ca or None) if tls_name else None
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="liveclients", daemon=True)
        self._tasks = []
        self._stopping = False

    # -- running ---------------------------------------------------------------------------

    def __enter__(self):
        self._thread.start()
        for client in self.clients:
            run = self._websocket if client.kind == "ws" else self._stream
            self._tasks.append(asyncio.run_coroutine_threadsafe(self._forever(client, run), self._loop))
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        if self._stopping:
            return
        self._stopping = True
        asyncio.run_coroutine_threadsafe(self._cancel_all(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)

    @staticmethod
    async def _cancel_all():
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def now():
        return time.monotonic()

    def all_connected(self):
        return all(client.connected for client in self.clients)

    def _record(self, client, what, **facts):
        event = Event(self.now(), client.name, client.kind, client.target, what, **facts)
        with self._lock:
            self.events.append(event)
            client.events.append(event)

    async def _forever(self, client, run):
        while not self._stopping:
            try:
                await run(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever failed, the client records it and tries again
                if client.connected:
                    client.connected = False
                    self._record(client, "disconnect", version=client.version, detail=f"{type(exc).__name__}: {exc}")
                else:
                    self._record(client, "failed", detail=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(RECONNECT_S)

    async def _websocket(self, client):
        options = {"open_timeout": CONNECT_TIMEOUT_S, "ping_interval": None, "close_timeout": 2}
        url = f"ws://{client.target}{self.ws_path}"
        if self.tls:
            host, port = client.target.rsplit(":", 1)
            url = f"wss://{self.tls_name}:{port}{self.ws_path}"
            options.update(ssl=self.tls, host=host, port=int(port))
        async with ws_connect(url, **options) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT_S))
            client.version, client.connected = hello.get("hello", ""), True
            self._record(client, "connect", version=client.version)
            try:
                async for _message in ws:
                    pass
                code = ws.close_code
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            client.connected = False
            self._record(client, "disconnect", version=client.version, code=code)

    async def _stream(self, client):
        url = f"{'https' if self.tls else 'http'}://{client.target}{self.sse_path}"
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=None)
        named = {"headers": {"Host": self.tls_name}, "extensions": {"sni_hostname": self.tls_name}} if self.tls else {}
        async with (
            httpx.AsyncClient(timeout=timeout, verify=self.tls or True) as http,
            http.stream("GET", url, **named) as reply,
        ):
            if reply.status_code != 200:
                raise RuntimeError(f"HTTP {reply.status_code}")
            how = "end of stream"
            try:
                async for line in reply.aiter_lines():
                    if line.startswith("data: ") and not client.connected:
                        client.version, client.connected = json.loads(line[6:]).get("version", ""), True
                        self._record(client, "connect", version=client.version)
            except httpx.HTTPError as exc:
                how = f"{type(exc).__name__}"
            if client.connected:
                client.connected = False
                self._record(client, "disconnect", version=client.version, detail=how)

    # -- reading ---------------------------------------------------------------------------

    def window(self, since, until=None):
        """Per client, what happened between ``since`` and ``until``: disconnects (with codes or how), failed
        connects, and the versions it connected to, in order."""
        until = self.now() if until is None else until
        with self._lock:
            events = [e for e in self.events if since <= e.t <= until]
        found = {c.name: {"kind": c.kind, "target": c.target, "disconnects": [], "failed": [], "landed": []}
                 for c in self.clients}  # fmt: skip
        for e in events:
            entry = found[e.client]
            if e.what == "disconnect":
                entry["disconnects"].append({"t": e.t, "code": e.code, "from": e.version, "how": e.detail})
            elif e.what == "failed":
                entry["failed"].append(e.detail)
            else:
                entry["landed"].append(e.version)
        return found

    def first(self, what, since, target=None, kind=None):
        """The time of the first ``what`` event after ``since`` (on ``target``, of ``kind``), or None."""
        with self._lock:
            times = [e.t for e in self.events if e.what == what and e.t >= since
                     and target in (None, e.target) and kind in (None, e.kind)]  # fmt: skip
        return min(times) if times else None

    def versions(self):
        """Where each client is connected now."""
        return {c.name: c.version for c in self.clients if c.connected}
