"""Search and tags served by an index under row-level security (ADR 0013).

Under FORCE ROW LEVEL SECURITY PostgreSQL applies the policy first and will not use a
non-leakproof operator (`ILIKE`, `&&`, `@>`) as an index condition, so `q=` and `tag=` read every
row of the user. Here:

- `task_search (user_id, task_id, search_text, tags)` mirrors what search and tags look at, with
  the GIN indexes that served them on `tasks` (those are dropped: under row-level security no
  query of the service could use them, and every write paid for them).
- It has row-level security enabled but not forced: its owner (the schema owner, who runs the
  definer functions below) reads it without the policy, so the operators become index
  conditions. The service's role has no privilege on it at all; the policy is a second wall in
  case someone grants one.
- `task_search_sync()` keeps it equal to `tasks` (a SECURITY DEFINER trigger: the service's
  role writes `tasks`, whose policy has already checked the row's user).
- `matching_task_ids(patterns, tags, all_tags, most)` is the only way in: a SECURITY DEFINER
  function that returns the ids of at most `most` tasks of the user named by `app.user_id` (none
  when it is unset or empty) whose search text matches every LIKE pattern and whose tags overlap
  (or, with `all_tags`, contain) `tags`.
  It takes no user argument. The list query keeps reading `task_list_v` under row-level
  security and keeps only the ids the function returns.

Both functions pin `search_path` and name every table by schema; EXECUTE is revoked from PUBLIC
and granted to the service's role on the search function only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SYNC_FUNCTION = """
CREATE FUNCTION task_search_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Mirrors rows that tasks' own policy has already let the caller write. The search text is
    -- what `q=` matches: the title, a space, the description (as 0004's index had it).
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.task_search (user_id, task_id, search_text, tags)
        VALUES (NEW.user_id, NEW.id, NEW.title || ' ' || coalesce(NEW.description, ''), NEW.tags);
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE public.task_search
        SET user_id = NEW.user_id, task_id = NEW.id,
            search_text = NEW.title || ' ' || coalesce(NEW.description, ''), tags = NEW.tags
        WHERE user_id = OLD.user_id AND task_id = OLD.id;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM public.task_search WHERE user_id = OLD.user_id AND task_id = OLD.id;
    ELSE
        TRUNCATE public.task_search;
    END IF;
    RETURN NULL;
END
$$
"""

# One ILIKE per pattern, each an index condition on the trigram index. The statement is built
# from fixed text and pattern positions only; the values travel as parameters ($1-$4). No
# sequential scan: with a LIMIT the planner may hope to meet the user's rows early in the table,
# and read every other user's instead; the user's range of an index is always there to read.
MATCH_FUNCTION = """
CREATE FUNCTION matching_task_ids(patterns text[], tags text[], all_tags boolean, most integer)
RETURNS SETOF bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
ROWS 1000
AS $$
DECLARE
    caller text := current_setting('app.user_id', true);
    statement text := 'SELECT task_id FROM public.task_search WHERE user_id = $1';
BEGIN
    IF coalesce(caller, '') = '' THEN
        RETURN;
    END IF;
    FOR n IN 1 .. coalesce(cardinality(patterns), 0) LOOP
        statement := statement || ' AND search_text ILIKE $2[' || n || ']';
    END LOOP;
    IF coalesce(cardinality(tags), 0) > 0 THEN
        statement := statement
            || CASE WHEN all_tags THEN ' AND tags @> $3' ELSE ' AND tags && $3' END;
    END IF;
    RETURN QUERY EXECUTE statement || ' LIMIT $4' USING caller, patterns, tags, most;
END
$$
"""

UPGRADE = (
    # The policy of every user-owned table (0002), enabled but not forced: see the docstring.
    "ALTER TABLE task_search ENABLE ROW LEVEL SECURITY",
    """
    CREATE POLICY task_search_user_isolation ON task_search
        USING (user_id = (SELECT current_setting('app.user_id', true)))
        WITH CHECK (user_id = (SELECT current_setting('app.user_id', true)))
    """,
    # Nothing for the service's role, even if default privileges would have granted some.
    "REVOKE ALL ON task_search FROM PUBLIC, taskapi_app",
    SYNC_FUNCTION,
    "REVOKE ALL ON FUNCTION task_search_sync() FROM PUBLIC, taskapi_app",
    MATCH_FUNCTION,
    "REVOKE ALL ON FUNCTION matching_task_ids(text[], text[], boolean, integer) FROM PUBLIC",
    "GRANT EXECUTE ON FUNCTION matching_task_ids(text[], text[], boolean, integer) TO taskapi_app",
    # Toggles and other edits that leave the searched columns alone fire nothing.
    """
    CREATE TRIGGER task_search_insert AFTER INSERT ON tasks
        FOR EACH ROW EXECUTE FUNCTION task_search_sync()
    """,
    """
    CREATE TRIGGER task_search_update
        AFTER UPDATE OF user_id, id, title, description, tags ON tasks
        FOR EACH ROW
        WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.id IS DISTINCT FROM NEW.id
              OR OLD.title IS DISTINCT FROM NEW.title
              OR OLD.description IS DISTINCT FROM NEW.description
              OR OLD.tags IS DISTINCT FROM NEW.tags)
        EXECUTE FUNCTION task_search_sync()
    """,
    """
    CREATE TRIGGER task_search_delete AFTER DELETE ON tasks
        FOR EACH ROW EXECUTE FUNCTION task_search_sync()
    """,
    """
    CREATE TRIGGER task_search_truncate AFTER TRUNCATE ON tasks
        FOR EACH STATEMENT EXECUTE FUNCTION task_search_sync()
    """,
)

# Under FORCE ROW LEVEL SECURITY the owner sees no task unless it names a user, so the copy is
# made with the force briefly lifted (as in 0005); DDL is transactional, no one sees the gap.
BACKFILL = (
    "ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY",
    """
    INSERT INTO task_search (user_id, task_id, search_text, tags)
    SELECT user_id, id, title || ' ' || coalesce(description, ''), tags FROM tasks
    """,
    "ALTER TABLE tasks FORCE ROW LEVEL SECURITY",
)

# 0004's text for the indexes dropped here.
TASKS_SEARCH_TEXT = "(title || ' ' || coalesce(description, ''))"

DOWNGRADE = (
    "DROP TRIGGER task_search_truncate ON tasks",
    "DROP TRIGGER task_search_delete ON tasks",
    "DROP TRIGGER task_search_update ON tasks",
    "DROP TRIGGER task_search_insert ON tasks",
    "DROP FUNCTION matching_task_ids(text[], text[], boolean, integer)",
    "DROP FUNCTION task_search_sync()",
)


def upgrade() -> None:
    op.create_table(
        "task_search",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("tags", sa.ARRAY(sa.Text()), nullable=False),
        # task_id first: a key led by user_id would let the planner read all of a user's rows
        # by it and filter, instead of asking the GIN index for the matches.
        sa.PrimaryKeyConstraint("task_id", "user_id", name="task_search_pkey"),
    )
    op.create_index(
        "task_search_user_tags_idx", "task_search", ["user_id", "tags"], postgresql_using="gin"
    )
    op.create_index(
        "task_search_user_text_idx",
        "task_search",
        ["user_id", "search_text"],
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    )
    for statement in UPGRADE + BACKFILL:
        op.execute(statement)
    op.drop_index("tasks_user_search_idx", table_name="tasks")
    op.drop_index("tasks_user_tags_idx", table_name="tasks")


def downgrade() -> None:
    op.create_index("tasks_user_tags_idx", "tasks", ["user_id", "tags"], postgresql_using="gin")
    op.execute(
        "CREATE INDEX tasks_user_search_idx ON tasks"
        " USING gin (user_id, " + TASKS_SEARCH_TEXT + " gin_trgm_ops)"
    )
    for statement in DOWNGRADE:
        op.execute(statement)
    op.drop_table("task_search")
