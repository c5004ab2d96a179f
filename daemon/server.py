"""The HTTP server: gevent's pywsgi, holding a bounded number of connections.

Every connection costs a file descriptor, and probes need descriptors too: with no bound,
1,100 idle clients took them all, left ``/health`` unanswered and failed every probe. So:

- at most ``max_connections`` connections are held at once (a gevent ``Pool``); past that the
  server stops accepting, and new connections wait in the kernel's listen queue, which costs
  this process no descriptor;
- when every slot is taken and a new connection waits, an idle connection (one waiting for its
  request's head, or for the next request on a keep-alive connection) makes room: the one idle
  longest is closed. However many clients sit idle, ``/health`` gets through at once;
- every read and write on a connection has ``io_timeout`` seconds: a silent client frees its
  slot even when nobody else is waiting;
- when ``accept()`` itself finds no descriptor, accepting pauses for a moment with one log
  event, instead of a traceback per attempt.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from daemon.logs import event

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256  # scrapers, health checks and dashboards need a handful
MIN_CONNECTIONS = 8
RESERVED_FDS = 64  # the interpreter, the logs, the targets and results files, AWS clients
IO_TIMEOUT = 30.0  # seconds one read or write on a connection may wait
BACKLOG = 1024  # connections waiting to be accepted cost the kernel, not this process
ACCEPT_PAUSE = 1.0  # seconds without accepting after accept() found no descriptor
_SHORTAGES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def connection_cap(fd_limit: int, concurrency: int) -> int:
    """How many connections the server may hold: half of the descriptors left once every probe
    slot (one socket each) and the process's own files have theirs, within
    [:data:`MIN_CONNECTIONS`, :data:`MAX_CONNECTIONS`]."""
    spare = fd_limit - concurrency - RESERVED_FDS
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, spare // 2))


class _Handler(WSGIHandler):  # type: ignore[misc]
    """pywsgi's handler, telling the server when its connection is idle (evictable)."""

    server: HttpServer

    def __init__(self, sock: socket.socket, address: Any, server: HttpServer) -> None:
        sock.settimeout(server.io_timeout)
        super().__init__(sock, address, server)

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            self.server.forget(self)

    def read_requestline(self) -> str:
        self.server.idle(self)  # until its head is read, the connection may be closed for room
        line: str = super().read_requestline()
        return line

    def read_request(self, raw_requestline: str) -> bool:
        try:
            parsed: bool = super().read_request(raw_requestline)
            return parsed
        finally:
            self.server.forget(self)

    def handle_error(self, kind: type[BaseException], error: BaseException, tb: Any) -> None:
        """A client that stopped reading its answer for ``io_timeout`` seconds is dropped with
        one log event; gevent would print a traceback and try to send a 500."""
        if isinstance(error, TimeoutError):
            self.close_connection = True
            path = (self.path or "").partition("?")[0]  # a query is the client's business
            log.info(event("http_client_dropped", path=path, reason="stopped reading"))
            return
        super().handle_error(kind, error, tb)

    def _handle_client_error(self, ex: BaseException) -> Any:
        """A head that never came (timed out, or the connection was closed for room) ends the
        connection quietly: gevent would print a traceback to stderr for each."""
        if isinstance(ex, OSError):
            return None
        return super()._handle_client_error(ex)


class HttpServer(WSGIServer):  # type: ignore[misc]
    """A WSGIServer holding at most ``max_connections`` connections (see the module)."""

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        max_connections: int,
        io_timeout: float = IO_TIMEOUT,
    ) -> None:
        self.io_timeout = io_timeout
        self.max_connections = max_connections
        self._pool = Pool(max_connections)
        # Idle connections, the one idle longest first (dicts keep insertion order).
        self._idle: dict[_Handler, None] = {}
        self._room: Any = None  # while the pool is full: a watcher for a connection waiting
        self._resume: gevent.Greenlet | None = None
        super().__init__(
            address,
            app,
            backlog=BACKLOG,
            spawn=self._pool,
            log=None,
            error_log=logging.getLogger("daemon.http"),
            handler_class=_Handler,
        )
        self.full = self._full  # gevent asks before every accept; set_spawn set pool.full

    # -- which connections may be closed to make room -------------------------------------

    def idle(self, handler: _Handler) -> None:
        """``handler`` waits for a request's head: from now on it may be closed for room."""
        self._idle[handler] = None
        if self._pool.full():  # accepting stopped, maybe before any connection was idle
            self._watch_for_room()

    def forget(self, handler: _Handler) -> None:
        self._idle.pop(handler, None)

    def _full(self) -> bool:
        """gevent's question before each accept. When full, gevent stops accepting until a
        slot frees; from then on, a connection arriving wakes :meth:`_make_room`."""
        if not self._pool.full():
            return False
        self._watch_for_room()
        return True

    def _watch_for_room(self) -> None:
        if self._room is None:
            listener = getattr(self, "socket", None)
            if listener is None:  # closed
                return
            self._room = self.loop.io(listener.fileno(), 1)
        if not self._room.active:
            self._room.start(self._make_room)

    def _make_room(self) -> None:
        """A connection waits and every slot is taken: close the connection idle longest. Its
        slot frees when its greenlet ends, and the pool then starts gevent accepting again.

        Runs from the event loop, after the greenlet that went idle last has had its turn: a
        fresh connection whose request had arrived has read it and is no longer idle. One at a
        time: the next connection accepted fills the pool again and re-arms the watch.
        """
        self._room.stop()
        if self._pool.full() and self._idle:
            self._close_idle(next(iter(self._idle)))

    def _close_idle(self, handler: _Handler) -> None:
        self._idle.pop(handler, None)
        sock = getattr(handler, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)  # its reader wakes with an error and ends

    # -- accepting --------------------------------------------------------------------------

    def do_read(self) -> Any:
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno not in _SHORTAGES:
                raise
            reason = exc.strerror or str(exc)
        log.warning(
            event(
                "http_accept_paused",
                error=reason,
                seconds=ACCEPT_PAUSE,
                connections=len(self._pool),
            )
        )
        self.stop_accepting()
        if self._resume is None or self._resume.dead:
            self._resume = gevent.spawn_later(ACCEPT_PAUSE, self._accept_again)
        return None

    def _accept_again(self) -> None:
        if self.started:
            self.start_accepting()

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, close the idle connections, then wait up to ``timeout`` for the
        requests in progress (an idle keep-alive connection would hold it all)."""
        self.close()
        if self._room is not None:
            self._room.stop()
            self._room.close()
        if self._resume is not None:
            self._resume.kill(block=False)
        for handler in list(self._idle):
            self._close_idle(handler)
        super().stop(timeout)
