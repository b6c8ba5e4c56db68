"""SQLAlchemy models of the task store, the single source of truth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # PU amounts are integer micro-PU (lifecycle/billing.py): they add up exactly.
    balance_micro_pu: Mapped[int] = mapped_column(BigInteger, default=0)
    # Held for features in flight, so that concurrent tasks never spend more than the balance.
    reserved_micro_pu: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A disabled account's tokens are refused and no new ones are issued (accounts.py).
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    @property
    def balance_pu(self) -> float:
        return self.balance_micro_pu / 1_000_000


class OAuthClient(Base):
    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    secret_hash: Mapped[str] = mapped_column(String(200))
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_account_created", "account_id", "created"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # The request as submitted, its credentials sealed (sealing.py); never echoed unredacted.
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="CREATED", index=True)
    user_action: Mapped[str] = mapped_column(String(10), default="NONE")
    user_action_updated: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # True from the moment the API records a user action until the controller has acted on it.
    action_pending: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    stopped_status_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cost_micro_pu: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set by the analysis: {"featureCount", "minPU", "expectedPU", "maxPU"}.
    estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    completion_percentage: Mapped[float] = mapped_column(Float, default=0.0)
    analysed: Mapped[bool] = mapped_column(Boolean, default=False)
    feature_count: Mapped[int] = mapped_column(Integer, default=0)
    # Controller lease: which controller works on the task and until when. The epoch grows each
    # time another controller takes the task; a write under an older epoch is refused (fencing).
    controller_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Feature(Base):
    __tablename__ = "features"
    __table_args__ = (Index("ix_features_task_status", "task_id", "status"),)

    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    epsg: Mapped[int] = mapped_column(Integer)
    minx: Mapped[float] = mapped_column(Float)
    miny: Mapped[float] = mapped_column(Float)
    maxx: Mapped[float] = mapped_column(Float)
    maxy: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    geometry: Mapped[bytes] = mapped_column(LargeBinary)  # WKB of the footprint, feature CRS
    status: Mapped[str] = mapped_column(String(10), default="PENDING")  # PENDING|DONE|FATAL
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    # Data samples: the most the analysis found (scenes/orbits over the feature), then the
    # number actually evaluated; the charge, the transfer surcharge and what is held meanwhile.
    max_samples: Mapped[int] = mapped_column(Integer, default=1)
    samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micro_pu: Mapped[int] = mapped_column(BigInteger, default=0)
    surcharge_micro_pu: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_micro_pu: Mapped[int] = mapped_column(BigInteger, default=0)
    billed: Mapped[bool] = mapped_column(Boolean, default=False)


class PinnedScenes(Base):
    """The STAC items one data source of a task reads, found once at analysis: a controller
    that restarts, or a start long after the analysis, reads exactly these (what the store keeps
    of each item: sources/stac.py `item_record`)."""

    __tablename__ = "pinned_scenes"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[int] = mapped_column(Integer, primary_key=True)  # index in input.data
    items: Mapped[list[Any]] = mapped_column(JSON)


class Collection(Base):
    __tablename__ = "byoc_collections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(500))
    s3_bucket: Mapped[str] = mapped_column(String(255))
    # Its own storage locator ({"s3": {...}} / {"gs": {...}}, credentials sealed); None: s3_bucket
    # of the deployment, read with the deployment's keys.
    storage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    no_data: Mapped[float | None] = mapped_column(Float, nullable=True)
    bands: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tile(Base):
    __tablename__ = "byoc_tiles"
    __table_args__ = (Index("ix_tiles_collection_path", "collection_id", "path", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    collection_id: Mapped[str] = mapped_column(
        ForeignKey("byoc_collections.id", ondelete="CASCADE")
    )
    path: Mapped[str] = mapped_column(String(1024))
    sensing_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cover_geometry: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # CRS84
    tile_geometry: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # tile CRS
    epsg: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(12), default="WAITING")
    failed_cause: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ingestion_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Metres per pixel of the tile's coarsest level at least 256 px wide or high: what the
    # collection's `maxMetersPerPixel` is derived from (sources/byoc.py).
    overview_meters: Mapped[float | None] = mapped_column(Float, nullable=True)


class LedgerEntry(Base):
    """One movement of an account's balance: a credit (+) or a charge (-), never edited."""

    __tablename__ = "ledger"
    __table_args__ = (Index("ix_ledger_account_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(20))  # credit | processing | transfer | minimum
    amount_micro_pu: Mapped[int] = mapped_column(BigInteger)
    balance_after_micro_pu: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ServiceSecret(Base):
    """A secret of the deployment that every replica must share (the token-signing key),
    sealed with the deployment's secret key (sealing.py)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
