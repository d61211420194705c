"""The graceful-shutdown fix (roles/service/files/asgi_deploy_gunicorn.py) against a real uvicorn.

`make unit` runs this with the oldest and the newest uvicorn the collection supports
(plugins/plugin_utils/artifacts.py: UVICORN_RANGE), each in its own venv, for both of
uvicorn's HTTP implementations. A connection a stopping worker accepted before its
request arrived must be answered, then closed, not reset; without the fix it is dropped, which is
the failure this fix exists for (if a uvicorn release stops dropping it, that test
says so).
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.server import Server

HOOKS = Path(__file__).resolve().parents[2] / "roles/service/files/asgi_deploy_gunicorn.py"


def load_hooks():
    spec = importlib.util.spec_from_file_location("asgi_deploy_gunicorn", HOOKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def serve(request):
    """A uvicorn Server on a socket of ours (as a Gunicorn worker gets one), in a thread."""
    running = []

    def start(http):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        server = Server(Config(app, http=http, lifespan="off", log_level="warning", timeout_graceful_shutdown=5))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
        thread.start()
        wait_for(lambda: server.started, what="uvicorn to start")
        running.append((server, thread))
        return server, sock.getsockname()

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_a_connection_accepted_before_a_stop_gets_its_answer(serve, http):
    if http == "httptools" and importlib.util.find_spec("httptools") is None:
        pytest.fail("httptools is not installed: the compat venv must have it")
    hooks = load_hooks()
    patched = hooks.answer_accepted_connections_on_shutdown()
    try:
        assert {p.__name__ for p in patched} == {"H11Protocol", "HttpToolsProtocol"}
        server, address = serve(http)
        client = socket.create_connection(address, timeout=10)
        wait_for(lambda: len(server.server_state.connections) == 1, what="the connection to be accepted")
        server.should_exit = True
        [protocol] = list(server.server_state.connections)
        wait_for(lambda: getattr(protocol, "_asgi_deploy_polls", 0) >= 1, what="the stop to reach the connection")
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = client.recv(4096).decode().lower()
        assert reply.startswith("http/1.1 200"), reply
        wait_for(lambda: client.recv(4096) == b"", what="the server to close the connection after its answer")
    finally:
        for protocol in patched:
            importlib.reload(sys.modules[protocol.__module__])


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_without_the_fix_uvicorn_drops_that_connection(serve, http):
    server, address = serve(http)
    client = socket.create_connection(address, timeout=10)
    wait_for(lambda: len(server.server_state.connections) == 1, what="the connection to be accepted")
    server.should_exit = True
    try:
        first = client.recv(4096)
    except ConnectionResetError:
        first = b""
    assert first == b"", f"uvicorn {uvicorn.__version__} answered an idle connection on shutdown: the fix may be moot"
