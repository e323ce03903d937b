"""Tasks table, its per-user indexes and the task_list_v view.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy: a later change to the view is a new migration with the full new text.
TASK_LIST_V = """
CREATE VIEW task_list_v AS
SELECT user_id, id, title, description, completed, completed_at, due_date, created_at, updated_at
FROM tasks
"""


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("completed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", "id", name="tasks_pkey"),
        sa.CheckConstraint("char_length(btrim(title)) >= 1", name="tasks_title_not_blank"),
        sa.CheckConstraint(
            "completed = (completed_at IS NOT NULL)", name="tasks_completed_at_matches"
        ),
    )
    op.create_index("tasks_user_created_idx", "tasks", ["user_id", "created_at", "id"])
    op.create_index(
        "tasks_user_pending_created_idx",
        "tasks",
        ["user_id", "created_at", "id"],
        postgresql_where=sa.text("NOT completed"),
    )
    op.create_index("tasks_user_title_idx", "tasks", ["user_id", sa.text("lower(title)"), "id"])
    op.create_index("tasks_user_due_idx", "tasks", ["user_id", "due_date", "id"])
    op.execute(TASK_LIST_V)


def downgrade() -> None:
    op.execute("DROP VIEW task_list_v")
    op.drop_table("tasks")
