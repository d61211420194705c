"""A live dashboard's backend: the browser keeps a WebSocket open for updates, and a server-sent events stream for
the activity feed. Each update names the version of the server that sent it, which the dashboard shows in its
footer. Readiness is /readyz.
"""

from __future__ import annotations

import asyncio
import json
import os
from importlib.metadata import version

from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

VERSION = version("live")
TICK_SECONDS = float(os.environ.get("LIVE_TICK_SECONDS", "0.25"))


async def readyz(request):
    return JSONResponse({"ready": True, "version": VERSION})


async def updates(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_json({"hello": VERSION})
    tick = 0
    try:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            tick += 1
            await websocket.send_json({"tick": tick, "version": VERSION})
    except WebSocketDisconnect:
        pass


async def activity(request):
    """text/event-stream: a hello, then an event per tick, each with an id the browser resends on reconnect."""
    start = int(request.headers.get("last-event-id") or 0)

    async def events():
        yield f"event: hello\ndata: {json.dumps({'version': VERSION})}\n\n"
        tick = start
        while True:
            await asyncio.sleep(TICK_SECONDS)
            tick += 1
            yield f"id: {tick}\ndata: {json.dumps({'tick': tick, 'version': VERSION})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


app = Starlette(
    routes=[Route("/readyz", readyz), Route("/activity", activity), WebSocketRoute("/updates", updates)],
)
