"""The dashboard backend's own tests, as its team runs them (Starlette's TestClient)."""

from __future__ import annotations

import json

import pytest
from live import app as live
from starlette.testclient import TestClient


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setattr(live, "TICK_SECONDS", 0.01)
    with TestClient(live.app) as client:
        yield client


def test_ready(client):
    assert client.get("/readyz").json() == {"ready": True, "version": live.VERSION}


def test_the_update_feed_says_hello_then_ticks(client):
    with client.websocket_connect("/updates") as ws:
        assert ws.receive_json() == {"hello": live.VERSION}
        assert ws.receive_json() == {"tick": 1, "version": live.VERSION}
        assert ws.receive_json()["tick"] == 2


def test_the_activity_stream_resumes_after_the_last_event_id(client):
    with client.stream("GET", "/activity", headers={"Last-Event-ID": "41"}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = reply.iter_lines()
        assert next(lines) == "event: hello"
        assert json.loads(next(lines).removeprefix("data: ")) == {"version": live.VERSION}
        assert next(lines) == ""
        assert next(lines) == "id: 42"
