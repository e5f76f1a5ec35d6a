"""The HTTP API: `create_app(services)` builds the FastAPI application (see docs/http-api.md)."""

from __future__ import annotations

from lapse.api.app import create_app

__all__ = ["create_app"]
