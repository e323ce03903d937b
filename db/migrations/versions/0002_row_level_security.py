"""Row-level security on tasks, a security-invoker view, and the service's own role.

Every user-owned table (one with a `user_id` column) gets the same four statements; a later table
copies them with its own name (the guard test in tests/integration/test_rls_guard.py fails until
it does):

    ALTER TABLE <t> ENABLE ROW LEVEL SECURITY;
    ALTER TABLE <t> FORCE ROW LEVEL SECURITY;
    CREATE POLICY <t>_user_isolation ON <t>
        USING (user_id = (SELECT current_setting('app.user_id', true)))
        WITH CHECK (user_id = (SELECT current_setting('app.user_id', true)));
    GRANT SELECT, INSERT, UPDATE, DELETE ON <t> TO taskapi_app;

and every view is created `WITH (security_invoker = true)` and granted `SELECT` to taskapi_app.
The policy applies to every role that does not bypass RLS (not only taskapi_app), so the owner
sees nothing either unless it sets `app.user_id`; an unset setting matches no user.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Roles are cluster-wide: several databases (dev, tests, bench) share this one. Created here only
# when missing, without LOGIN; the operator gives it LOGIN and a password (see README).
CREATE_APP_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'taskapi_app') THEN
        CREATE ROLE taskapi_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created concurrently by another database's migration
END
$$
"""

# The scalar subquery makes the setting an InitPlan, read once per statement, not once per row.
UPGRADE = (
    "GRANT USAGE ON SCHEMA public TO taskapi_app",
    "ALTER TABLE tasks ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE tasks FORCE ROW LEVEL SECURITY",
    """
    CREATE POLICY tasks_user_isolation ON tasks
        USING (user_id = (SELECT current_setting('app.user_id', true)))
        WITH CHECK (user_id = (SELECT current_setting('app.user_id', true)))
    """,
    "GRANT SELECT, INSERT, UPDATE, DELETE ON tasks TO taskapi_app",
    "ALTER VIEW task_list_v SET (security_invoker = true)",
    "GRANT SELECT ON task_list_v TO taskapi_app",
)

DOWNGRADE = (
    "REVOKE SELECT ON task_list_v FROM taskapi_app",
    "ALTER VIEW task_list_v RESET (security_invoker)",
    "REVOKE SELECT, INSERT, UPDATE, DELETE ON tasks FROM taskapi_app",
    "DROP POLICY tasks_user_isolation ON tasks",
    "ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY",
    "ALTER TABLE tasks DISABLE ROW LEVEL SECURITY",
    "REVOKE USAGE ON SCHEMA public FROM taskapi_app",
)


def upgrade() -> None:
    op.execute(CREATE_APP_ROLE)
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    # The role stays: other databases on the cluster may use it.
    for statement in DOWNGRADE:
        op.execute(statement)
