"""A Starlette app built by a factory, with a slow startup, a secret and state of its own.

It knows nothing of asgi.deploy: no /version route, no release file. Its
readiness path is /health, which answers 503 until the startup finished.
Notes live in $STATE_DIRECTORY (kept across releases) when there is one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from notes.store import Store


def token_digest() -> str:
    """The API token, from systemd's credentials directory: its digest proves it was read, and leaks nothing."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return ""
    return hashlib.sha256(Path(directory, "api_token").read_bytes()).hexdigest()


def create_app() -> Starlette:
    state = {"ready": False, "token": "", "store": Store.from_environment()}

    @asynccontextmanager
    async def lifespan(app):
        # Warming caches, opening pools: a startup that takes a while.
        await asyncio.sleep(float(os.environ.get("NOTES_STARTUP_SECONDS", "2")))
        state["token"] = token_digest()
        state["ready"] = True
        yield

    async def health(request):
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    async def notes(request):
        store = state["store"]
        if request.method == "POST":
            text = json.loads(await request.body()).get("text", "")
            return JSONResponse(store.add(text), status_code=201)
        return JSONResponse({"notes": store.all(), "schema": store.schema(), "served_by": os.getpid()})

    async def secret(request):
        return JSONResponse({"api_token_sha256": state["token"]})

    routes = [Route("/health", health), Route("/notes", notes, methods=["GET", "POST"]), Route("/secret", secret)]
    return Starlette(routes=routes, lifespan=lifespan)
