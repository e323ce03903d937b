"""Idempotency keys keep the command's result (the task), not a rendered HTTP response.

The route renders a replay exactly as it rendered the first answer, from the same task; the write
side no longer knows status codes or headers. Stored answers are converted, so a retry across the
deploy still replays. Downgrading renders them back with status 200 (a create's 201 is not kept).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The stored body is the task as the API rendered it: priority by name, the rest as stored.
BODY_TO_RESULT = """
UPDATE idempotency_keys
SET result = body::jsonb || jsonb_build_object(
    'priority',
    CASE body::jsonb ->> 'priority' WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 END
)
"""
RESULT_TO_BODY = """
UPDATE idempotency_keys
SET status_code = 200,
    headers = jsonb_build_object('ETag', '"' || (result ->> 'version') || '"'),
    body = (result || jsonb_build_object(
        'priority',
        CASE result ->> 'priority'
            WHEN '1' THEN 'low' WHEN '2' THEN 'medium' WHEN '3' THEN 'high'
        END
    ))::text
"""


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("result", postgresql.JSONB(), nullable=True))
    op.execute(BODY_TO_RESULT)
    op.alter_column("idempotency_keys", "result", nullable=False)
    for column in ("status_code", "headers", "body"):
        op.drop_column("idempotency_keys", column)


def downgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("status_code", sa.SmallInteger(), nullable=True))
    op.add_column("idempotency_keys", sa.Column("headers", postgresql.JSONB(), nullable=True))
    op.add_column("idempotency_keys", sa.Column("body", sa.Text(), nullable=True))
    op.execute(RESULT_TO_BODY)
    for column in ("status_code", "headers", "body"):
        op.alter_column("idempotency_keys", column, nullable=False)
    op.drop_column("idempotency_keys", "result")
