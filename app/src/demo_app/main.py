"""HTTP surface: /healthz (alive), /readyz (startup finished), /version."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response

from demo_app.release import version_info
from demo_app.settings import settings


def log_event(event: str, **fields) -> None:
    """Write one JSON line to stderr, which systemd puts in the journal."""
    print(json.dumps({"event": event, **fields}, sort_keys=True), file=sys.stderr, flush=True)


class StartupError(RuntimeError):
    """Raised when the service is told to fail its startup (for failure drills)."""


@asynccontextmanager
async def lifespan(app: FastAPI):
    info = version_info()
    app.state.version = info
    log_event("startup", pid=os.getpid(), **info)
    delay = float(os.environ.get("DEMO_APP_STARTUP_DELAY", "0"))
    if delay:
        await asyncio.sleep(delay)
    if os.environ.get("DEMO_APP_FAIL_STARTUP") == "1":
        raise StartupError("startup failed on purpose (DEMO_APP_FAIL_STARTUP=1)")
    app.state.ready = True
    yield
    app.state.ready = False


app = FastAPI(title="demo-app", lifespan=lifespan)
app.state.ready = False


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@app.get("/readyz")
async def readyz(response: Response) -> dict[str, str]:
    if not app.state.ready:
        response.status_code = 503
        return {"status": "starting"}
    return {"status": "ready"}


@app.get("/version")
async def version() -> dict[str, str]:
    return app.state.version


@app.get("/sleep")
async def sleep(seconds: float = 1.0) -> dict[str, float]:
    """A slow request, for drain and graceful-shutdown drills (capped at 120 s)."""
    seconds = max(0.0, min(seconds, 120.0))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/")
async def root() -> dict[str, str]:
    return {
        "app": "demo-app",
        "release_id": app.state.version["release_id"],
        "environment": settings.environment,
        "greeting": settings.greeting,
    }
