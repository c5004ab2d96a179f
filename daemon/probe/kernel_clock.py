"""The kernel's view of a plain-http exchange's timing (Linux).

``SO_TIMESTAMPNS`` stamps received data with the time it arrived (``CLOCK_REALTIME``, as an
``SCM_TIMESTAMPNS`` message), and ``TCP_INFO``'s ``tcpi_rtt`` holds the handshake's round trip
right after connect. Timed this way, a probe whose greenlet waits behind others on a busy event
loop is not charged for the wait. The interface is small: :func:`watch` a connected socket,
read from it with :func:`stamped_recv`, read its :class:`Stamps`, and :func:`handshake_rtt`.
Where the kernel offers none of it, the probe falls back to user-space clocks.

What the kernel's stamps can and cannot say (Linux 6.18, measured on loopback):

- A read's stamp is the arrival of the newest data it took. Worse, a receive queue keeps one
  time per buffer, and a segment (a FIN too) that arrives while an earlier one still waits is
  merged into it with the *later* time (``tcp_try_coalesce``). So when the event loop is held
  through the arrival of both the headers and the body, the first read's stamp is the body's
  arrival: processing then holds the whole exchange and transfer is 0 (their sum, the
  duration, stays right). No read size helps: one byte, or a ``MSG_PEEK`` of one byte, gets
  the same merged time, so the first read stays a plain one (no extra syscall a probe). Only a
  reader that runs while the hub is held (another OS thread) could catch the headers' time.
- Some reads carry no stamp at all: the kernel turns stamping on for the whole system only
  while some socket asks for it, and lazily, so a lone probe's first packets can arrive
  unstamped. ``first`` is therefore the first read's stamp or unknown, never a later read's;
  ``last`` the last read's or unknown, never an earlier one's.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass

AVAILABLE = sys.platform == "linux"
_SO_TIMESTAMPNS = 35
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if AVAILABLE else 0


@dataclass(slots=True)
class Stamps:
    """When one plain-http hop's request left and its response's bytes arrived.

    Unix times: ``sent`` when the request was handed to the kernel, ``first`` and ``last``
    the kernel's receive times of the first and the last read that returned data (None when
    that read came unstamped).
    """

    sent: float | None = None
    first: float | None = None
    last: float | None = None
    reads: int = 0  # reads that returned data

    def processing(self, bound: float) -> float | None:
        """Request sent to first byte in, at most ``bound`` (the monotonic interval around it:
        kernel stamps are wall-clock times, and a clock step must not make a phase of any
        size); None when the kernel did not stamp both ends."""
        if self.sent is None or self.first is None:
            return None
        return min(max(self.first - self.sent, 0.0), bound)

    def transfer(self, bound: float) -> float | None:
        """First byte to last byte, at most ``bound``; None when not stamped."""
        if self.first is None or self.last is None:
            return None
        return min(max(self.last - self.first, 0.0), bound)


def watch(sock: socket.socket) -> Stamps | None:
    """Ask the kernel to stamp what ``sock`` receives; the :class:`Stamps` to fill, or None
    where the kernel does not stamp (use user-space clocks)."""
    if not AVAILABLE:
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return None
    return Stamps()


def stamped_recv(sock: socket.socket, stamps: Stamps) -> Callable[[int], bytes]:
    """``sock.recv``, noting each read's kernel receive time in ``stamps`` (see there). The
    request's send time is the sender's to note, in ``stamps.sent``."""

    def recv(size: int) -> bytes:
        data, ancillary, _flags, _address = sock.recvmsg(size, _ANCILLARY)
        if not data:
            return data  # the end of the stream: no data, no stamp
        at: float | None = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= 16:
                seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
                at = seconds + nanoseconds * 1e-9
        if not stamps.reads:
            stamps.first = at
        stamps.reads += 1
        stamps.last = at
        return data

    return recv


def handshake_rtt(sock: socket.socket) -> float | None:
    """The TCP handshake's round trip in seconds, as the kernel measured it; None if unknown
    or if the SYN had to be sent again (then the round trip is not the time connect took)."""
    if not AVAILABLE:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < 104 or struct.unpack_from("I", info, 100)[0]:  # tcpi_total_retrans
        return None
    rtt_us: int = struct.unpack_from("I", info, 68)[0]
    return rtt_us / 1e6
