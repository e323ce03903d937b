"""A guard over the whole schema: a new table, view or function cannot skip row-level security.

Generic on purpose: it looks at every table, view and SECURITY DEFINER function in the public
schema, so a migration that adds one without the pattern of migration 0002 fails here. A table
outside row-level security is allowed only when it is listed below with its reason and the
service's role has no privilege on it at all; a definer function only when it is listed, pins
its `search_path`, and (unless it is a trigger, which no one can call) reads `app.user_id`.
The last tests break each rule inside a rolled-back transaction and watch the guard fail.
"""

from sqlalchemy import Connection, text

from db.embedded import APP_ROLE

# Tables the service's role may not touch at all, so row-level security is not their wall.
UNTOUCHABLE_TABLES = {
    "alembic_version": "migration bookkeeping",
    "task_search": "the search index, read only through matching_task_ids (ADR 0013)",
}
# Tables without users' rows that the service's role may read and nothing more.
SHARED_TABLES = {"cursor_secret": "the cursor-signing key (ADR 0009)"}
# SECURITY DEFINER functions: those the service's role may call, and triggers.
CALLABLE_DEFINERS = {"matching_task_ids": "search and tags under row-level security (ADR 0013)"}
DEFINER_TRIGGERS = {"task_search_sync": "keeps task_search equal to tasks (ADR 0013)"}

USER_OWNED_TABLES = text(
    """
    SELECT c.oid::regclass::text AS name, c.relrowsecurity, c.relforcerowsecurity
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
      AND EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped)
    ORDER BY 1
    """
)
POLICIES = text(
    "SELECT policyname, cmd, qual, with_check FROM pg_policies"
    " WHERE schemaname = 'public' AND tablename = :table"
)
VIEWS = text(
    """
    SELECT c.relname, coalesce(c.reloptions, '{}') AS options
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'v'
    """
)
ROLE = text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :role")
OWNED = text(
    """
    SELECT 'relation ' || relname FROM pg_class WHERE relowner = to_regrole(:role)
    UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspowner = to_regrole(:role)
    UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE proowner = to_regrole(:role)
    UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typowner = to_regrole(:role)
    UNION ALL SELECT 'database ' || datname FROM pg_database WHERE datdba = to_regrole(:role)
    """
)
MEMBER_OF_AN_OWNER = text(
    """
    SELECT DISTINCT pg_get_userbyid(c.relowner)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND pg_has_role(:role, c.relowner, 'MEMBER')
    """
)
USER_SETTING = "current_setting('app.user_id'"
TABLES = text(
    """
    SELECT c.relname AS name, c.relrowsecurity, c.relforcerowsecurity,
           EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                   AND a.attname = 'user_id' AND NOT a.attisdropped) AS has_user_id,
           ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                            'REFERENCES', 'TRIGGER']) AS p
                 WHERE has_table_privilege(:role, c.oid, p)
                    OR (p IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                        AND has_any_column_privilege(:role, c.oid, p))) AS granted
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
    ORDER BY 1
    """
)
DEFINERS = text(
    """
    SELECT p.proname AS name, p.prosrc AS body, coalesce(p.proconfig, '{}') AS config,
           p.prorettype = 'trigger'::regtype AS is_trigger,
           has_function_privilege(:role, p.oid, 'EXECUTE') AS callable
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.prosecdef
    ORDER BY 1
    """
)


def table_problems(conn: Connection) -> list[str]:
    """Every way a public table breaks the rule, as sentences (empty: none)."""
    problems = []
    for table in conn.execute(TABLES, {"role": APP_ROLE}):
        name, granted = table.name, table.granted
        if name in UNTOUCHABLE_TABLES:
            if granted:
                problems.append(f"{name}: outside row-level security, yet {APP_ROLE} has {granted}")
        elif name in SHARED_TABLES:
            if table.has_user_id or set(granted) - {"SELECT"}:
                problems.append(f"{name}: a shared table holds users' rows or is writable")
        elif not (table.relrowsecurity and table.relforcerowsecurity):
            problems.append(f"{name}: row-level security is not enabled and forced")
        else:
            problems += policy_problems(conn, name)
    return problems


def policy_problems(conn: Connection, table: str) -> list[str]:
    policies = conn.execute(POLICIES, {"table": table}).all()
    if not policies:
        return [f"{table} has no policy"]
    problems = []
    for policy in policies:
        where = f"{table}.{policy.policyname}"
        if policy.cmd != "ALL":
            problems.append(f"{where}: one policy for every command")
        if USER_SETTING not in (policy.qual or ""):
            problems.append(f"{where}: USING is off app.user_id")
        if USER_SETTING not in (policy.with_check or ""):
            problems.append(f"{where}: WITH CHECK is off app.user_id")
    return problems


def definer_problems(conn: Connection) -> list[str]:
    """Every way a SECURITY DEFINER function breaks the rule, as sentences (empty: none)."""
    problems = []
    for function in conn.execute(DEFINERS, {"role": APP_ROLE}):
        name = function.name
        allowed = DEFINER_TRIGGERS if function.is_trigger else CALLABLE_DEFINERS
        if name not in allowed:
            problems.append(f"{name}: a definer function not on the guard's list")
        if not any(setting.startswith("search_path=") for setting in function.config):
            problems.append(f"{name}: search_path is not pinned")
        if function.is_trigger and function.callable:
            problems.append(f"{name}: {APP_ROLE} may execute a definer trigger function")
        if not function.is_trigger and USER_SETTING not in function.body:
            problems.append(f"{name}: does not read app.user_id")
    return problems


def test_there_is_at_least_one_user_owned_table(connection: Connection) -> None:
    names = [row.name for row in connection.execute(USER_OWNED_TABLES)]
    assert "tasks" in names


def test_every_table_is_under_forced_row_security_or_out_of_the_service_roles_reach(
    connection: Connection,
) -> None:
    assert table_problems(connection) == []


def test_every_user_owned_table_is_either_policed_or_untouchable(connection: Connection) -> None:
    for table in connection.execute(USER_OWNED_TABLES):
        if table.name not in UNTOUCHABLE_TABLES:
            assert table.relforcerowsecurity, f"{table.name}: FORCE ROW LEVEL SECURITY is missing"


def test_every_definer_function_is_listed_pinned_and_scoped_to_the_caller(
    connection: Connection,
) -> None:
    assert definer_problems(connection) == []


def test_the_listed_definer_functions_exist(connection: Connection) -> None:
    names = {row.name for row in connection.execute(DEFINERS, {"role": APP_ROLE})}
    assert names == set(CALLABLE_DEFINERS) | set(DEFINER_TRIGGERS)


def test_every_view_runs_with_its_readers_rights(connection: Connection) -> None:
    for view in connection.execute(VIEWS):
        options = {option.partition("=")[0]: option.partition("=")[2] for option in view.options}
        assert options.get("security_invoker") in {"true", "on", "1", "yes"}, (
            f"view {view.relname} lacks security_invoker = true"
        )


def test_the_service_role_can_bypass_nothing(connection: Connection) -> None:
    role = connection.execute(ROLE, {"role": APP_ROLE}).one()
    assert not role.rolsuper
    assert not role.rolbypassrls


def test_the_service_role_owns_nothing(connection: Connection) -> None:
    assert connection.execute(OWNED, {"role": APP_ROLE}).scalars().all() == []


def test_the_service_role_cannot_become_a_table_owner(connection: Connection) -> None:
    assert connection.execute(MEMBER_OF_AN_OWNER, {"role": APP_ROLE}).scalars().all() == []


# The guard itself: each rule, broken on purpose in the test's rolled-back transaction (the
# owner's connection: what a migration could do).


def test_the_guard_fails_a_table_without_row_security_that_the_service_can_read(
    connection: Connection,
) -> None:
    connection.execute(text("CREATE TABLE notes (user_id text, body text)"))
    connection.execute(text(f"GRANT SELECT ON notes TO {APP_ROLE}"))
    assert table_problems(connection) == ["notes: row-level security is not enabled and forced"]


def test_the_guard_fails_a_table_without_a_user_column_that_the_service_can_read(
    connection: Connection,
) -> None:
    connection.execute(text("CREATE TABLE settings (name text, value text)"))
    connection.execute(text(f"GRANT SELECT ON settings TO {APP_ROLE}"))
    assert table_problems(connection) == ["settings: row-level security is not enabled and forced"]


def test_the_guard_fails_a_grant_on_the_search_index(connection: Connection) -> None:
    connection.execute(text(f"GRANT SELECT (task_id) ON task_search TO {APP_ROLE}"))
    assert table_problems(connection) == [
        f"task_search: outside row-level security, yet {APP_ROLE} has ['SELECT']"
    ]


def test_the_guard_fails_a_policy_that_does_not_check_the_user(connection: Connection) -> None:
    connection.execute(text("CREATE POLICY everyone ON tasks USING (true)"))
    assert "tasks.everyone: USING is off app.user_id" in table_problems(connection)


def definer(connection: Connection, name: str, body: str, pinned: bool = True) -> None:
    setting = " SET search_path = pg_catalog, pg_temp" if pinned else ""
    connection.execute(
        text(
            f"CREATE FUNCTION {name}() RETURNS SETOF bigint LANGUAGE sql STABLE SECURITY DEFINER"
            f"{setting} AS $$ {body} $$"
        )
    )


def test_the_guard_fails_an_unlisted_definer_function(connection: Connection) -> None:
    definer(connection, "all_task_ids", "SELECT task_id FROM public.task_search")
    assert definer_problems(connection) == [
        "all_task_ids: a definer function not on the guard's list",
        "all_task_ids: does not read app.user_id",
    ]


def test_the_guard_fails_a_definer_function_without_a_pinned_search_path(
    connection: Connection,
) -> None:
    connection.execute(text("DROP FUNCTION matching_task_ids"))
    body = (
        "SELECT task_id FROM public.task_search"
        " WHERE user_id = current_setting('app.user_id', true)"
    )
    definer(connection, "matching_task_ids", body, pinned=False)
    assert definer_problems(connection) == ["matching_task_ids: search_path is not pinned"]


def test_the_guard_fails_a_callable_definer_trigger(connection: Connection) -> None:
    connection.execute(text(f"GRANT EXECUTE ON FUNCTION task_search_sync() TO {APP_ROLE}"))
    assert definer_problems(connection) == [
        f"task_search_sync: {APP_ROLE} may execute a definer trigger function"
    ]
