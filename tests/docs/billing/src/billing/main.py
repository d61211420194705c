"""The ASGI app, made by a factory (asgi_entrypoint: billing.main:create_app())."""

import os
from importlib.metadata import version
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app():
    environment = os.environ["BILLING_ENVIRONMENT"]  # required, as the docs' inventory sets it
    credentials = Path(os.environ.get("CREDENTIALS_DIRECTORY", "/nonexistent"))

    async def health(request):
        return JSONResponse({"ok": True, "version": version("billing"), "environment": environment})

    async def home(request):
        return JSONResponse({"service": "billing", "db_password_given": (credentials / "db_password").is_file()})

    return Starlette(routes=[Route("/health", health), Route("/", home)])
