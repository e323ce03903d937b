"""WAL positions as tokens, and READ_DATABASE_URL as a list of replicas (no database)."""

import pytest

from api.consistency import position_of, token_of
from db.replication import WalPosition
from db.settings import DatabaseSettings


def test_a_position_reads_as_postgresql_writes_it() -> None:
    assert int(WalPosition.parse("16/B374D848")) == (0x16 << 32) | 0xB374D848
    assert str(WalPosition.parse("0/1a2b")) == "0/1A2B"


def test_a_token_is_the_position_in_hexadecimal_and_back() -> None:
    position = WalPosition.parse("16/B374D848")
    assert token_of(position) == "16B374D848"
    assert position_of("16b374d848") == position
    assert position_of("0") == WalPosition.parse("0/0")
    assert position_of(" 0\n") == WalPosition.parse("0/0")


@pytest.mark.parametrize("token", ["", " ", "16/B374D848", "x1", "1" * 17, "0 1"])
def test_anything_else_is_not_a_token(token: str) -> None:
    with pytest.raises(ValueError, match="not a consistency token"):
        position_of(token)


def test_positions_order_as_the_wal_does() -> None:
    assert int(WalPosition.parse("1/0")) > int(WalPosition.parse("0/FFFFFFFF"))


@pytest.mark.parametrize("text", ["", "0", "0/", "/1", "0/1/2", "G/1", "123456789/0", " 0/1"])
def test_anything_else_is_not_a_position(text: str) -> None:
    with pytest.raises(ValueError, match="not a WAL position"):
        WalPosition.parse(text)


def test_read_database_url_lists_replicas_and_never_the_primary() -> None:
    settings = DatabaseSettings(
        database_url="postgresql://app@primary/tasks",
        read_database_url=" postgresql://app@r1/tasks ,,postgresql://app@primary/tasks,"
        "postgresql://app@r2/tasks",
    )
    assert settings.replica_urls() == ["postgresql://app@r1/tasks", "postgresql://app@r2/tasks"]
    assert DatabaseSettings(database_url="postgresql://app@primary/tasks").replica_urls() == []
