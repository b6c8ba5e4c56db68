"""The running service: store, Dask client, controller and HTTP server, run together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.engine import start_client, stop_client
from eobatch.lifecycle.controller import Controller
from eobatch.store import Database

log = logging.getLogger(__name__)


def open_database(settings: Settings) -> Database:
    """The store at its newest schema."""
    db = Database(settings.resolved_database_url)
    db.migrate()
    return db


@contextmanager
def running_controller(settings: Settings, db: Database) -> Iterator[Controller]:
    """A controller loop in a background thread, with its Dask client."""
    client = start_client(settings)
    controller = Controller(db, settings, client)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
        stop_client(client)


class BackgroundServer(uvicorn.Server):
    """uvicorn in a thread (for the demo), ready once `started` is set."""

    def install_signal_handlers(self) -> None:  # the main thread keeps its own handlers
        pass

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="eobatch-api", daemon=True)
        thread.start()
        return thread


def serve(settings: Settings, host: str, port: int, controller: bool = True) -> None:
    """Run the API (and, unless disabled, the controller with its cluster) until interrupted."""
    db = open_database(settings)
    app = create_app(settings, db)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)
    if not controller:
        uvicorn.Server(config).run()
        return
    with running_controller(settings, db):
        uvicorn.Server(config).run()
