"""Recovery: from a lost Dask scheduler, and from the crash of the only (SQLite) controller.

A Dask client that loses its scheduler cancels every future it holds, tries to reconnect for
its connect timeout, and then closes for good. `Cluster` notices, and connects a new client to
the same address every few seconds until the scheduler answers again. Features whose jobs were
lost that way are not failures: they are still PENDING in the store (with their PU hold) and are
simply submitted again; no attempt is counted against them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import CancelledError

from distributed import Client, LocalCluster
from distributed.comm.core import CommClosedError
from sqlalchemy import update

from eobatch.config import Settings
from eobatch.engine import start_client
from eobatch.store import Database
from eobatch.store.models import Task

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # per attempt to reach the scheduler (also the client's own retries)
RETRY_S = 5.0  # between attempts while the scheduler is unreachable
SIZE_REFRESH_S = 2.0  # how stale the cluster's worker count may be


def void_leases(db: Database) -> None:
    """On SQLite there is only ever one controller: leases of a previous run (that crashed)
    are void at once instead of after they expire."""
    with db.session() as session:
        session.execute(update(Task).values(controller_id=None, lease_until=None))


def job_was_lost(error: BaseException) -> bool:
    """True for a job that never finished because the cluster lost it (its client lost the
    scheduler, or the job was cancelled) or whose result could not be fetched (the connection
    to the scheduler was cut while gathering it): it is run again, not counted as an attempt.
    A job's own failures never get here as these: `run_features` turns them into outcomes."""
    return isinstance(error, CancelledError | CommClosedError)


class Cluster:
    """The Dask cluster as the controller sees it: a client that is replaced whenever it lost
    its scheduler for good, and the cluster's size."""

    def __init__(self, client: Client | None, address: str | None = None) -> None:
        self.client = client
        self.address = address or (client.scheduler.address if client is not None else None)
        self._owned = False  # whether close() closes the client (and its LocalCluster)
        self._local: LocalCluster | None = None
        self._down_since: float | None = None if self.connected else time.monotonic()
        self._retry_at = 0.0
        self._connecting = threading.Thread()  # the background connection attempt, if any
        self._fresh: Client | None = None  # a client it connected, not yet taken into use
        self._size = (0, 0)
        self._size_at = -math.inf

    @classmethod
    def start(cls, settings: Settings) -> Cluster:
        """Connect to the configured scheduler (retried later if it is not up yet), or start a
        LocalCluster."""
        client = None
        try:
            client = start_client(settings, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:  # only an external scheduler can be unreachable
            log.warning(
                "Dask scheduler %s unreachable (%s); retrying every %g s",
                settings.dask_scheduler,
                exc,
                RETRY_S,
            )
        cluster = cls(client, settings.dask_scheduler)
        cluster._owned = True
        cluster._local = client.cluster if client is not None else None  # type: ignore[assignment]
        return cluster

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.status == "running"

    def down_for(self) -> float:
        """Seconds since the scheduler was lost; 0 while connected."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    def check(self) -> bool:
        """True when jobs can be submitted. A client that gave up is replaced by a new one,
        connected in the background so that the loop goes on with user actions meanwhile."""
        if self._fresh is not None:  # a background connection succeeded
            self._close_client()
            self.client, self._fresh, self._owned = self._fresh, None, True
            self._size_at = -math.inf
        if self.connected:
            if self._down_since is not None:
                log.info("connected to the Dask scheduler at %s", self.address)
            self._down_since = None
            return True
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "lost the Dask scheduler at %s; its jobs will be submitted again", self.address
            )
        if self.address is None:
            return False
        if self.client is not None and self.client.status == "connecting":
            return False  # the client is still retrying on its own
        if self._connecting.is_alive() or now < self._retry_at:
            return False
        self._retry_at = now + RETRY_S
        self._connecting = threading.Thread(
            target=self._connect, name="eobatch-dask-connect", daemon=True
        )
        self._connecting.start()
        return False

    def _connect(self) -> None:
        try:
            self._fresh = Client(self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError):
            log.info("Dask scheduler %s still unreachable", self.address)

    def size(self) -> tuple[int, int]:
        """(workers, worker threads) the scheduler knows, at most a few seconds old."""
        if not self.connected:
            return 0, 0
        now = time.monotonic()
        if now - self._size_at >= SIZE_REFRESH_S:
            self._size_at = now
            try:
                assert self.client is not None
                info = self.client.scheduler_info(n_workers=0)
                self._size = (int(info.get("n_workers", 0)), int(info.get("total_threads", 0)))
            except Exception:  # the scheduler is going away: the next check() notices
                log.debug("could not ask the scheduler for its size", exc_info=True)
        return self._size

    def dashboard(self) -> str | None:
        """The Dask dashboard's address, if the scheduler serves one."""
        if not self.connected:
            return None
        assert self.client is not None
        try:
            if "dashboard" not in self.client.scheduler_info(n_workers=0).get("services", {}):
                return None  # bokeh is not installed, or the dashboard is disabled
            return self.client.dashboard_link
        except Exception:
            return None

    def _close_client(self) -> None:
        if self.client is not None and self._owned:
            try:
                self.client.close(timeout=CONNECT_TIMEOUT_S)
            except Exception:  # it is gone already
                log.debug("closing a lost Dask client failed", exc_info=True)
        self.client = None

    def close(self) -> None:
        """Close the client (if this object made it) and the LocalCluster it started."""
        if self._connecting.ident is not None:
            self._connecting.join(CONNECT_TIMEOUT_S)
        if self._fresh is not None:
            self._fresh.close()
            self._fresh = None
        self._close_client()
        if self._local is not None:
            self._local.close()
            self._local = None
