"""The change feed: a per-user change sequence, tombstones for deletions, and a notification.

- Every insert, update and delete of a task takes the next number of its user's change sequence,
  `task_counters.last_change`, in a trigger. The counter row stays locked until the transaction
  ends, so two transactions of one user take their numbers in the order they commit: a reader
  that sees number n committed has already seen every smaller one (docs/adr/0014).
- `tasks.change_seq` is the number of a task's latest change; a deleted task leaves a row in
  `task_tombstones` with the number of its deletion. Ids are never given twice (0005); should
  one be (a counter reset by hand, as the benchmark's reset does), the new task's insert removes
  the old tombstone and a second delete renumbers it. `task_counters.purged_through` is the
  highest number of a tombstone purged: a token below it may have missed a deletion (410).
- The trigger notifies channel `task_changes` with the user id; PostgreSQL delivers it at commit,
  once per transaction and user.
- `task_changes_v` is every task (as `task_list_v` shows it) and every tombstone, by number.

Existing tasks are numbered per user in the order they were last updated; each user's counter
then holds their count. Under FORCE ROW LEVEL SECURITY the owner sees no task unless it names a
user, so the numbering runs with the force briefly lifted, as in 0005.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NUMBER_EXISTING_TASKS = """
UPDATE tasks SET change_seq = numbered.n
FROM (SELECT user_id, id,
             row_number() OVER (PARTITION BY user_id ORDER BY updated_at, id) AS n
      FROM tasks) AS numbered
WHERE tasks.user_id = numbered.user_id AND tasks.id = numbered.id
"""
FILL_LAST_CHANGE = """
UPDATE task_counters SET last_change = counted.n
FROM (SELECT user_id, count(*) AS n FROM tasks GROUP BY user_id) AS counted
WHERE task_counters.user_id = counted.user_id
"""

# The upsert takes (or creates) the user's counter row and keeps it locked until commit. A
# counter made here (a task inserted without the create statement) starts with last_id 0, as
# the create statement's own upsert would have left it.
NEXT_CHANGE_FUNCTION = """
CREATE FUNCTION task_next_change(owner text) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    INSERT INTO task_counters AS c (user_id, last_id, last_change) VALUES (owner, 0, 1)
    ON CONFLICT (user_id) DO UPDATE SET last_change = c.last_change + 1
    RETURNING last_change
$$
"""
STAMP_FUNCTION = """
CREATE FUNCTION task_stamp_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_seq := task_next_change(NEW.user_id);
    IF TG_OP = 'INSERT' THEN
        -- An id given again (after a counter was reset by hand) replaces its old tombstone.
        DELETE FROM task_tombstones WHERE user_id = NEW.user_id AND id = NEW.id;
    END IF;
    PERFORM pg_notify('task_changes', NEW.user_id);
    RETURN NEW;
END
$$
"""
TOMBSTONE_FUNCTION = """
CREATE FUNCTION task_leave_tombstone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_tombstones AS t (user_id, id, change_seq, deleted_at)
    VALUES (OLD.user_id, OLD.id, task_next_change(OLD.user_id), now())
    ON CONFLICT (user_id, id)
    DO UPDATE SET change_seq = excluded.change_seq, deleted_at = excluded.deleted_at;
    PERFORM pg_notify('task_changes', OLD.user_id);
    RETURN NULL;
END
$$
"""
TRIGGERS = (
    "CREATE TRIGGER tasks_stamp_change BEFORE INSERT OR UPDATE ON tasks"
    " FOR EACH ROW EXECUTE FUNCTION task_stamp_change()",
    "CREATE TRIGGER tasks_leave_tombstone AFTER DELETE ON tasks"
    " FOR EACH ROW EXECUTE FUNCTION task_leave_tombstone()",
)

# The row-level security every user-owned table gets (see 0002).
TASK_TOMBSTONES_RLS = (
    "ALTER TABLE task_tombstones ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE task_tombstones FORCE ROW LEVEL SECURITY",
    """
    CREATE POLICY task_tombstones_user_isolation ON task_tombstones
        USING (user_id = (SELECT current_setting('app.user_id', true)))
        WITH CHECK (user_id = (SELECT current_setting('app.user_id', true)))
    """,
    "GRANT SELECT, INSERT, UPDATE, DELETE ON task_tombstones TO taskapi_app",
)

# Frozen copies of the full view text; `change_seq` is appended so existing columns keep
# their positions.
TASK_LIST_V = """
CREATE OR REPLACE VIEW task_list_v WITH (security_invoker = true) AS
SELECT user_id, id, title, description, completed, completed_at, due_date, created_at, updated_at,
       version,
       CASE priority WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END AS priority,
       priority AS priority_rank,
       tags,
       due_at,
       change_seq
FROM tasks
"""
TASK_LIST_V_BEFORE = """
CREATE OR REPLACE VIEW task_list_v WITH (security_invoker = true) AS
SELECT user_id, id, title, description, completed, completed_at, due_date, created_at, updated_at,
       version,
       CASE priority WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END AS priority,
       priority AS priority_rank,
       tags,
       due_at
FROM tasks
"""
# Both branches have the same column types, so the planner flattens the UNION ALL and answers
# `WHERE user_id = ... AND change_seq > ... ORDER BY change_seq LIMIT n` with a merge of two
# index scans (tests/integration/test_query_plans_changes.py).
TASK_CHANGES_V = """
CREATE VIEW task_changes_v WITH (security_invoker = true) AS
SELECT user_id, change_seq, 'upsert'::text AS op, NULL::timestamptz AS deleted_at,
       id, title::text, description::text, completed, completed_at, due_date, created_at,
       updated_at, version, priority, tags, due_at
FROM task_list_v
UNION ALL
SELECT user_id, change_seq, 'delete'::text, deleted_at,
       id, NULL::text, NULL::text, NULL::boolean, NULL::timestamptz, NULL::date, NULL::timestamptz,
       NULL::timestamptz, NULL::integer, NULL::text, NULL::text[], NULL::timestamptz
FROM task_tombstones
"""
CHANGE_STATE_V = """
CREATE VIEW change_state_v WITH (security_invoker = true) AS
SELECT user_id, last_change, purged_through FROM task_counters
"""
VIEWS = (TASK_LIST_V, TASK_CHANGES_V, CHANGE_STATE_V)
VIEW_GRANTS = (
    "GRANT SELECT ON task_changes_v TO taskapi_app",
    "GRANT SELECT ON change_state_v TO taskapi_app",
)


def upgrade() -> None:
    op.add_column(
        "task_counters",
        sa.Column("last_change", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "task_counters",
        sa.Column("purged_through", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "tasks",
        sa.Column("change_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.execute("ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE task_counters NO FORCE ROW LEVEL SECURITY")
    op.execute(NUMBER_EXISTING_TASKS)
    op.execute(FILL_LAST_CHANGE)
    op.execute("ALTER TABLE task_counters FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tasks FORCE ROW LEVEL SECURITY")
    op.create_index("tasks_user_change_idx", "tasks", ["user_id", "change_seq"])

    op.create_table(
        "task_tombstones",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "deleted_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", "id", name="task_tombstones_pkey"),
    )
    op.create_index("task_tombstones_user_change_idx", "task_tombstones", ["user_id", "change_seq"])
    op.create_index(
        "task_tombstones_user_deleted_idx", "task_tombstones", ["user_id", "deleted_at"]
    )
    for statement in TASK_TOMBSTONES_RLS:
        op.execute(statement)

    for statement in (NEXT_CHANGE_FUNCTION, STAMP_FUNCTION, TOMBSTONE_FUNCTION, *TRIGGERS):
        op.execute(statement)
    for statement in (*VIEWS, *VIEW_GRANTS):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP VIEW change_state_v")
    op.execute("DROP VIEW task_changes_v")
    op.execute("DROP VIEW task_list_v")
    op.execute(TASK_LIST_V_BEFORE)
    op.execute("GRANT SELECT ON task_list_v TO taskapi_app")
    op.execute("DROP TRIGGER tasks_leave_tombstone ON tasks")
    op.execute("DROP TRIGGER tasks_stamp_change ON tasks")
    op.execute("DROP FUNCTION task_leave_tombstone()")
    op.execute("DROP FUNCTION task_stamp_change()")
    op.execute("DROP FUNCTION task_next_change(text)")
    op.drop_table("task_tombstones")
    op.drop_index("tasks_user_change_idx", table_name="tasks")
    op.drop_column("tasks", "change_seq")
    op.drop_column("task_counters", "purged_through")
    op.drop_column("task_counters", "last_change")
