"""Reads retry a failed connection attempt a bounded number of times; writes never retry."""

import socket
from typing import Any

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.exc import OperationalError

from api.deps import READ_CONNECT_ATTEMPTS, connect_for_reading


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again when the with block ends: connections are refused


def test_an_unreachable_database_is_tried_a_bounded_number_of_times() -> None:
    engine = create_engine(f"postgresql+psycopg2://nobody@127.0.0.1:{closed_port()}/none")
    attempts: list[Any] = []
    event.listen(engine, "do_connect", lambda *args: attempts.append(args))

    with pytest.raises(OperationalError):
        connect_for_reading(engine)

    assert len(attempts) == READ_CONNECT_ATTEMPTS
    engine.dispose()
