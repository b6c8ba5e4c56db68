"""The running service: store, Dask cluster, controller and HTTP server, run together."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from eobatch.api import create_app
from eobatch.config import Settings
from eobatch.lifecycle.controller import Controller
from eobatch.lifecycle.recovery import Cluster
from eobatch.logs import configure_logging
from eobatch.sealing import KEY_FILE, SealingError, keyring_for
from eobatch.signing import check_secret_key
from eobatch.store import Database
from eobatch.store.db import NotUpgraded, check_known_schema, schema_revision

log = logging.getLogger(__name__)


def open_database(settings: Settings, upgrade: bool = True) -> Database:
    """The store at its newest schema (replicas starting together migrate it once), checked
    to open with this deployment's secret key (`SealingError` otherwise). A shared store is
    first checked by `check_shared_schema` (without `upgrade`, one behind is refused)."""
    db = Database(settings.resolved_database_url)
    try:
        check_shared_schema(db, settings, upgrade)
    except BaseException:
        db.dispose()
        raise
    keyring = keyring_for(settings)
    db.migrate(keyring)
    try:
        check_secret_key(db, keyring)
    except BaseException:
        db.dispose()
        raise
    return db


def check_shared_schema(db: Database, settings: Settings, upgrade: bool) -> None:
    """What may happen to a shared (PostgreSQL) store's schema here: refused if a newer
    eobatch migrated it (`UnknownSchema`); if it is behind, refused without `upgrade`
    (`NotUpgraded`: an operator's command must not change the schema under replicas still
    running the older version), and refused without the deployment's key (`SealingError`: a
    key made here would seal what the upgrade seals, the stored credentials at 0010_security,
    where no replica can open it). An embedded SQLite store (one process) is always upgraded."""
    if db.is_sqlite:
        return
    check_known_schema(db.engine)
    current, head = schema_revision(db.engine)
    if current == head:
        return
    if not upgrade:
        raise NotUpgraded(
            f"the store is at schema revision {current or '(empty)'} and this eobatch needs "
            f"{head}: run `eobatch migrate` once every replica runs this version"
        )
    has_key = settings.secret_key is not None or (settings.data_dir / KEY_FILE).exists()
    if current is not None and not has_key:
        raise SealingError(
            f"the store is at schema revision {current} and upgrading it to {head} needs the "
            "deployment's key: set EOBATCH_SECRET_KEY to the key every replica uses and run "
            "`eobatch migrate` again"
        )


@contextmanager
def running_controller(settings: Settings, db: Database) -> Iterator[Controller]:
    """A controller loop in a background thread, with its Dask cluster. On the way out it
    gives its tasks back, so that another replica carries on without waiting for the leases."""
    cluster = Cluster.start(settings)
    controller = Controller(db, settings, cluster)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
        cluster.close()


class BackgroundServer(uvicorn.Server):
    """uvicorn in a thread (for the demo), ready once `started` is set."""

    def install_signal_handlers(self) -> None:  # the main thread keeps its own handlers
        pass

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="eobatch-api", daemon=True)
        thread.start()
        return thread


def serve(settings: Settings, sock: socket.socket, controller: bool = True) -> None:
    """Run the API on the bound socket `sock` (and, unless disabled, the controller with its
    cluster) until interrupted."""
    configure_logging(settings.log_format, settings.log_level)
    db = open_database(settings)

    def run(running: Controller | None) -> None:
        app = create_app(settings, db, running)
        # log_config=None: uvicorn's records (the access log too) go through our handlers.
        config = uvicorn.Config(app, log_config=None, access_log=True)
        uvicorn.Server(config).run(sockets=[sock])

    if not controller:
        run(None)
        return
    with running_controller(settings, db) as running:
        dashboard = running.cluster.dashboard()
        log.info("Dask dashboard: %s", dashboard or "none (install bokeh, or see the scheduler)")
        run(running)
