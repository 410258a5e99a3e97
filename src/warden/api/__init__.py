"""The HTTP front end (the only package that imports FastAPI): routes, auth, error mapping."""

from warden.api.app import create_app

__all__ = ["create_app"]
