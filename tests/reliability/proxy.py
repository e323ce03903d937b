"""A loopback TCP proxy between the service and PostgreSQL that a test can cut or slow down."""

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import URL, make_url

CHUNK = 65536


def upstream_for(database_url: str) -> Callable[[], socket.socket]:
    """How to reach the server of `database_url`: its Unix socket, or its TCP host and port."""
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, tuple):
        socket_dir = socket_dir[0]
    port = url.port or 5432
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        path = f"{socket_dir}/.s.PGSQL.{port}"

        def unix() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            return sock

        return unix
    host = url.host or "127.0.0.1"
    return lambda: socket.create_connection((host, port), timeout=10)


class Proxy:
    """Listens on 127.0.0.1; forwards each connection to the upstream until told otherwise."""

    def __init__(self, upstream: Callable[[], socket.socket]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._refusing = False
        self.delay = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def url_for(self, database_url: str) -> str:
        """`database_url` rerouted through this proxy (TCP on loopback)."""
        url: URL = make_url(database_url)
        url = url.set(host="127.0.0.1", port=self.port, query={})
        return url.render_as_string(hide_password=False)

    def cut(self) -> None:
        """Drop every open connection and hang up on new ones, as a network outage would."""
        with self._lock:
            self._refusing = True
            doomed, self._open = self._open, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        with self._lock:
            self._refusing = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                client.close()
                continue
            try:
                server = self._upstream()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                if self.delay:
                    time.sleep(self.delay)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
