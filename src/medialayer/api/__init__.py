"""The HTTP API: `create_app()` builds the FastAPI service (run it with `uvicorn --factory`)."""

from medialayer.api.app import create_app

__all__ = ["create_app"]
