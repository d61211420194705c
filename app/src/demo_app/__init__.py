"""The reference FastAPI service that asgi.deploy ships and measures."""
