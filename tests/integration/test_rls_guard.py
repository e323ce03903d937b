"""A guard over the whole schema: a new user-owned table or view cannot skip row-level security.

Generic on purpose: it looks at every table with a `user_id` column and every view in the public
schema, so a migration that adds one without the pattern of migration 0002 fails here.
"""

from sqlalchemy import Connection, text

from db.embedded import APP_ROLE

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


def test_there_is_at_least_one_user_owned_table(connection: Connection) -> None:
    names = [row.name for row in connection.execute(USER_OWNED_TABLES)]
    assert "tasks" in names


def test_every_user_owned_table_has_forced_row_security(connection: Connection) -> None:
    for table in connection.execute(USER_OWNED_TABLES):
        assert table.relrowsecurity, f"{table.name}: ENABLE ROW LEVEL SECURITY is missing"
        assert table.relforcerowsecurity, f"{table.name}: FORCE ROW LEVEL SECURITY is missing"


def test_every_user_owned_table_has_policies_using_and_checking_the_user(
    connection: Connection,
) -> None:
    for table in connection.execute(USER_OWNED_TABLES):
        policies = connection.execute(POLICIES, {"table": table.name}).all()
        assert policies, f"{table.name} has no policy"
        for policy in policies:
            where = f"{table.name}.{policy.policyname}"
            assert policy.cmd == "ALL", f"{where}: one policy for every command"
            assert USER_SETTING in (policy.qual or ""), f"{where}: USING is off app.user_id"
            assert USER_SETTING in (policy.with_check or ""), (
                f"{where}: WITH CHECK is off app.user_id"
            )


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
