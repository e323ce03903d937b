"""Task versions (ETags, conditional writes) and idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the full view text; `version` is appended so existing columns keep positions.
TASK_LIST_V = """
CREATE OR REPLACE VIEW task_list_v WITH (security_invoker = true) AS
SELECT user_id, id, title, description, completed, completed_at, due_date, created_at, updated_at,
       version
FROM tasks
"""

TASK_LIST_V_BEFORE = """
CREATE OR REPLACE VIEW task_list_v WITH (security_invoker = true) AS
SELECT user_id, id, title, description, completed, completed_at, due_date, created_at, updated_at
FROM tasks
"""


# The row-level security every user-owned table gets (see 0002).
IDEMPOTENCY_KEYS_RLS = (
    "ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY",
    """
    CREATE POLICY idempotency_keys_user_isolation ON idempotency_keys
        USING (user_id = (SELECT current_setting('app.user_id', true)))
        WITH CHECK (user_id = (SELECT current_setting('app.user_id', true)))
    """,
    "GRANT SELECT, INSERT, DELETE ON idempotency_keys TO taskapi_app",
)


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
    )
    op.execute(TASK_LIST_V)
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name="idempotency_keys_pkey"),
    )
    op.create_index(
        "idempotency_keys_user_created_idx", "idempotency_keys", ["user_id", "created_at"]
    )
    for statement in IDEMPOTENCY_KEYS_RLS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.execute("DROP VIEW task_list_v")
    op.execute(TASK_LIST_V_BEFORE)
    op.drop_column("tasks", "version")
