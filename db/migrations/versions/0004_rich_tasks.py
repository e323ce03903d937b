"""Priorities, tags and due instants on tasks; the indexes behind filters, sorts and search.

- `priority` is a smallint rank (1 low, 2 medium, 3 high) so that it sorts and compares as a
  number; the view names it and keeps the rank as `priority_rank` for sorting and filtering.
- `tags` is a sorted, de-duplicated, lower-cased `text[]` on the task itself (not a child table),
  so every change to a task stays one statement (ADR 0004). A GIN index on `(user_id, tags)`
  (btree_gin provides the `user_id` part) serves `tag=` with `&&` (any) and `@>` (all).
- `due_at` is an exact instant; `due_date` stays the all-day date; never both.
- Search is trigram substring matching (`ILIKE '%term%'`) over `title || ' ' || description`,
  served by a GIN `(user_id, <that text> gin_trgm_ops)` index.
- "Due" sorts by one key, `coalesce(due_at, <due_date at 00:00 UTC>, ±infinity)`: +infinity for
  ascending and -infinity for descending order puts undated tasks last in both directions, and a
  keyset comparison on a never-null key stays an index condition. One index per direction.

pg_trgm and btree_gin are trusted extensions (PostgreSQL 13+): the database owner that migrates
can create them without being a superuser (Neon included). They stay on downgrade, since other
objects may have come to rely on them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the full view text. New columns are appended so existing ones keep positions.
TASK_LIST_V = """
CREATE OR REPLACE VIEW task_list_v WITH (security_invoker = true) AS
SELECT user_id, id, title, description, completed, completed_at, due_date, created_at, updated_at,
       version,
       CASE priority WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END AS priority,
       priority AS priority_rank,
       tags,
       due_at
FROM tasks
"""

TASK_LIST_V_BEFORE = """
CREATE OR REPLACE VIEW task_list_v WITH (security_invoker = true) AS
SELECT user_id, id, title, description, completed, completed_at, due_date, created_at, updated_at,
       version
FROM tasks
"""

EXTENSIONS = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE EXTENSION IF NOT EXISTS btree_gin",
)

DUE_ASC = "coalesce(due_at, (due_date::timestamp AT TIME ZONE 'UTC'), 'infinity'::timestamptz)"
DUE_DESC = "coalesce(due_at, (due_date::timestamp AT TIME ZONE 'UTC'), '-infinity'::timestamptz)"
SEARCH_TEXT = "(title || ' ' || coalesce(description, ''))"


def upgrade() -> None:
    for statement in EXTENSIONS:
        op.execute(statement)
    op.add_column(
        "tasks",
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("2"), nullable=False),
    )
    op.add_column(
        "tasks",
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
    )
    op.add_column("tasks", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint("tasks_priority_known", "tasks", "priority BETWEEN 1 AND 3")
    op.create_check_constraint("tasks_tags_at_most_20", "tasks", "cardinality(tags) <= 20")
    op.create_check_constraint(
        "tasks_due_date_or_due_at", "tasks", "due_date IS NULL OR due_at IS NULL"
    )
    op.drop_index("tasks_user_due_idx", table_name="tasks")
    op.create_index("tasks_user_updated_idx", "tasks", ["user_id", "updated_at", "id"])
    op.create_index("tasks_user_priority_idx", "tasks", ["user_id", "priority", "id"])
    op.create_index("tasks_user_due_asc_idx", "tasks", ["user_id", sa.text(DUE_ASC), "id"])
    op.create_index("tasks_user_due_desc_idx", "tasks", ["user_id", sa.text(DUE_DESC), "id"])
    op.create_index("tasks_user_tags_idx", "tasks", ["user_id", "tags"], postgresql_using="gin")
    op.execute(
        "CREATE INDEX tasks_user_search_idx ON tasks"
        " USING gin (user_id, " + SEARCH_TEXT + " gin_trgm_ops)"
    )
    op.execute(TASK_LIST_V)


def downgrade() -> None:
    op.execute("DROP VIEW task_list_v")
    op.execute(TASK_LIST_V_BEFORE)
    op.execute("GRANT SELECT ON task_list_v TO taskapi_app")
    for name in (
        "tasks_user_search_idx",
        "tasks_user_tags_idx",
        "tasks_user_due_desc_idx",
        "tasks_user_due_asc_idx",
        "tasks_user_priority_idx",
        "tasks_user_updated_idx",
    ):
        op.drop_index(name, table_name="tasks")
    op.create_index("tasks_user_due_idx", "tasks", ["user_id", "due_date", "id"])
    op.drop_constraint("tasks_due_date_or_due_at", "tasks")
    op.drop_constraint("tasks_tags_at_most_20", "tasks")
    op.drop_constraint("tasks_priority_known", "tasks")
    op.drop_column("tasks", "due_at")
    op.drop_column("tasks", "tags")
    op.drop_column("tasks", "priority")
