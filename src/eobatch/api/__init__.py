"""The HTTP surface: schemas in, SH-style JSON out; no processing happens here."""

from eobatch.api.app import create_app

__all__ = ["create_app"]
