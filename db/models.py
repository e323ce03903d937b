"""SQLModel tables: the write side's view of the schema. Alembic migrations are its only source."""

from datetime import date, datetime
from typing import Any, ClassVar, Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
USER_ID_MAX = 128
TAG_MAX = 50
TAGS_MAX = 20
Priority = Literal["low", "medium", "high"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
"""Stored as their rank, 1-3, so that they sort and compare as numbers."""
PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES, start=1)}

# Expressions the list queries sort by; the indexes below are built on the same text.
DUE_ASC_KEY = "coalesce(due_at, (due_date::timestamp AT TIME ZONE 'UTC'), 'infinity'::timestamptz)"
DUE_DESC_KEY = (
    "coalesce(due_at, (due_date::timestamp AT TIME ZONE 'UTC'), '-infinity'::timestamptz)"
)


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    # Every index leads with user_id, so each one is a per-user range and the table can be sharded
    # by user. Backward scans serve the "newest first" order from ascending indexes.
    __table_args__ = (
        Index("tasks_user_created_idx", "user_id", "created_at", "id"),
        Index(
            "tasks_user_pending_created_idx",
            "user_id",
            "created_at",
            "id",
            postgresql_where=text("NOT completed"),
        ),
        Index("tasks_user_updated_idx", "user_id", "updated_at", "id"),
        Index("tasks_user_change_idx", "user_id", "change_seq"),
        Index("tasks_user_priority_idx", "user_id", "priority", "id"),
        Index("tasks_user_due_asc_idx", "user_id", text(DUE_ASC_KEY), "id"),
        Index("tasks_user_due_desc_idx", "user_id", text(DUE_DESC_KEY), "id"),
        # Search and tags are indexed on TaskSearch, where row-level security lets them be used.
    )
    # Fetch server-side values (id, timestamps) in the INSERT/UPDATE's own RETURNING clause.
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}

    user_id: str = Field(sa_column=Column(String(USER_ID_MAX), primary_key=True))
    # Numbered per user from TaskCounter (commands/tasks.py), so an id tells nothing about
    # other users' tasks; the column has no default of its own.
    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=False)
    )
    title: str = Field(sa_column=Column(String(TITLE_MAX), nullable=False))
    description: str | None = Field(
        default=None, sa_column=Column(String(DESCRIPTION_MAX), nullable=True)
    )
    completed: bool = Field(
        default=False,
        sa_column=Column(Boolean, nullable=False, server_default=false()),
    )
    completed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    due_date: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    due_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    priority: int | None = Field(
        default=None,
        sa_column=Column(SmallInteger, nullable=False, server_default=text("2")),
    )
    tags: list[str] | None = Field(
        default=None,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    )
    version: int | None = Field(
        default=None,
        sa_column=Column(Integer, nullable=False, server_default=text("1")),
    )
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )

    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    change_seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, nullable=False, server_default=text("0")),
    )
    """The number of the task's latest change in its user's sequence, set by a trigger
    (migration 0007, docs/adr/0014); the change feed reads in this order."""


# Declared outside the class because it is an expression over the mapped column.
Index("tasks_user_title_idx", Task.user_id, func.lower(Task.title), Task.id)  # type: ignore[arg-type]


class IdempotencyKeyRow(SQLModel, table=True):
    """The result of a write sent with an Idempotency-Key (see commands/idempotency.py)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("idempotency_keys_user_created_idx", "user_id", "created_at"),)

    user_id: str = Field(sa_column=Column(String(USER_ID_MAX), primary_key=True))
    key: str = Field(sa_column=Column(String(255), primary_key=True))
    fingerprint: str = Field(sa_column=Column(String(64), nullable=False))
    result: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    """The task as the command left it (`Task`'s fields, priority as its rank)."""
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class TaskCounter(SQLModel, table=True):
    """The last task id each user was given; ids are never reused, even after a delete."""

    __tablename__ = "task_counters"

    user_id: str = Field(sa_column=Column(String(USER_ID_MAX), primary_key=True))
    last_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_change: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0"))
    )
    """The last number of the user's change sequence (taken by a trigger on tasks)."""
    purged_through: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0"))
    )
    """The highest change number of a purged tombstone: older change tokens are gone (410)."""


class TaskTombstone(SQLModel, table=True):
    """A deleted task, kept TOMBSTONE_RETENTION_DAYS so the change feed can report it."""

    __tablename__ = "task_tombstones"
    __table_args__ = (
        Index("task_tombstones_user_change_idx", "user_id", "change_seq"),
        Index("task_tombstones_user_deleted_idx", "user_id", "deleted_at"),
    )

    user_id: str = Field(sa_column=Column(String(USER_ID_MAX), primary_key=True))
    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    change_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    deleted_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class CursorSecretRow(SQLModel, table=True):
    """The key that signs list cursors when CURSOR_SECRET is unset: one row, made by migration
    0005, readable by the service's role and writable only by the schema owner."""

    __tablename__ = "cursor_secret"
    __table_args__ = (
        CheckConstraint("only_row", name="cursor_secret_one_row"),
        CheckConstraint("octet_length(secret) >= 32", name="cursor_secret_long_enough"),
    )

    only_row: bool = Field(
        default=True, sa_column=Column(Boolean, primary_key=True, server_default=true())
    )
    secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TaskSearch(SQLModel, table=True):
    """What `q=` and `tag=` look at, one row per task, kept equal to `tasks` by a trigger and
    read only by the function `matching_task_ids` (migration 0008, ADR 0013). The service's
    role has no privilege on it: its indexes can serve the operators because the function reads
    it as its owner, outside row-level security."""

    __tablename__ = "task_search"
    # btree_gin lets user_id lead the GIN indexes (migration 0004).
    __table_args__ = (
        Index("task_search_user_tags_idx", "user_id", "tags", postgresql_using="gin"),
        Index(
            "task_search_user_text_idx",
            "user_id",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
    )

    # The key is (task_id, user_id), task_id first: see migration 0008.
    task_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    user_id: str = Field(sa_column=Column(String(USER_ID_MAX), primary_key=True))
    search_text: str = Field(sa_column=Column(Text, nullable=False))
    """The title, a space, the description (empty when there is none)."""
    tags: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
