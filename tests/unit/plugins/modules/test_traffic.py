"""The canary's numbers: requests and server errors counted from the access lines the workers write."""

from __future__ import annotations

from ansible_collections.asgi.deploy.plugins.modules import traffic


def test_uvicorn_and_gunicorn_access_lines_are_counted_and_nothing_else():
    lines = [
        '10.88.0.1:52346 - "GET / HTTP/1.1" 500',  # uvicorn's access logger (UvicornWorker)
        '10.88.0.1:52347 - "GET /version HTTP/1.1" 200',
        '127.0.0.1 "GET /readyz HTTP/1.1" 503 21 2ms "curl/8"',  # gunicorn's access_log_format
        '127.0.0.1 "POST /notes HTTP/1.1" 201 40 5ms "locust"',
        "[2026-11-29 12:47:17 +0000] [48529] [ERROR] Exception in ASGI application",
        'RuntimeError: 9.4.0 breaks "GET / HTTP/1.1" 5000',  # not a status
    ]
    assert traffic.count(lines) == (4, 2)
