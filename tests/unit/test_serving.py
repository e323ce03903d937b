"""`taskapi serve`'s listening sockets: one per worker on one port, no Nagle delay."""

import socket

import pytest

from api.cli import bind_listeners


def test_each_worker_gets_its_own_socket_on_the_same_port() -> None:
    listeners = bind_listeners("127.0.0.1", 0, 2)
    try:
        ports = {sock.getsockname()[1] for sock in listeners}
        assert len(listeners) == 2
        assert len(ports) == 1
    finally:
        for sock in listeners:
            sock.close()


def test_accepted_connections_have_nagle_off() -> None:
    (listener,) = bind_listeners("127.0.0.1", 0, 1)
    try:
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()


def test_a_port_another_server_listens_on_is_refused() -> None:
    listeners = bind_listeners("127.0.0.1", 0, 2)
    try:
        with pytest.raises(OSError, match="in use"):
            bind_listeners("127.0.0.1", listeners[0].getsockname()[1], 2)
    finally:
        for sock in listeners:
            sock.close()
