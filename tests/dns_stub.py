"""A DNS server on 127.0.0.1:53 and a web server, for tests run inside a network namespace.

``python -m tests.dns_stub --http-port N [--log FILE] -- COMMAND...`` binds both servers, runs
COMMAND and exits with its status. Bound before the command starts, they are ready for its
first lookup. Only useful inside ``unshare -mn`` with a resolv.conf naming 127.0.0.1 (see
tests/test_dns.py): port 53 needs root, and the namespace keeps every packet on its own ``lo``.

The zone:

- ``*.up.test`` and ``up.test``: one A record, 127.0.0.1; no AAAA (an empty NOERROR answer);
- ``*.dead.test``: never answered, like a domain whose name servers are gone;
- everything else: NXDOMAIN.

Each query is logged as one line, ``QNAME QTYPE``, when ``--log`` is given. The web server
answers every request with ``200 OK`` and a short body.
"""

from __future__ import annotations

import argparse
import socket
import struct
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO

TYPE_A = 1
CLASS_IN = 1
NOERROR = 0
NXDOMAIN = 3
HEALTHY = "up.test"
DEAD = "dead.test"


def parse_question(packet: bytes) -> tuple[int, int, str, int, int]:
    """The query's id, flags, name (lower case, no trailing dot), type and the question's end."""
    ident, flags = struct.unpack_from("!HH", packet)
    labels = []
    offset = 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    offset += 1
    qtype, _qclass = struct.unpack_from("!HH", packet, offset)
    return ident, flags, ".".join(labels).lower(), qtype, offset + 4


def answer(packet: bytes) -> bytes | None:
    """The reply to one query, or None for a name that is never answered."""
    ident, flags, name, qtype, end = parse_question(packet)
    if name == DEAD or name.endswith("." + DEAD):
        return None
    healthy = name == HEALTHY or name.endswith("." + HEALTHY)
    rcode = NOERROR if healthy else NXDOMAIN
    records = b""
    if healthy and qtype == TYPE_A:
        # A name pointer to the question (offset 12), type A, class IN, TTL 60, 4 bytes.
        records = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 60, 4) + socket.inet_aton(
            "127.0.0.1"
        )
    # QR, the query's RD, RA, AA; one question, the answers, no authority, no additional.
    reply_flags = 0x8000 | (flags & 0x0100) | 0x0080 | 0x0400 | rcode
    header = struct.pack("!HHHHHH", ident, reply_flags, 1, 1 if records else 0, 0, 0)
    return header + packet[12:end] + records


def serve_dns(sock: socket.socket, log: IO[str] | None, lock: threading.Lock) -> None:
    while True:
        try:
            packet, client = sock.recvfrom(512)
        except OSError:
            return
        try:
            reply = answer(packet)
            _ident, _flags, name, qtype, _end = parse_question(packet)
        except (IndexError, struct.error):
            continue  # not a query this stub understands: ignore it
        if log is not None:
            with lock:
                log.write(f"{name} {qtype}\n")
                log.flush()
        if reply is not None:
            sock.sendto(reply, client)


class Web(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default backlog of 5 drops SYNs of a burst of probes


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--log")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    log = open(args.log, "a") if args.log else None  # noqa: SIM115 - open for the process
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))
    web = Web(("127.0.0.1", args.http_port), Ok)
    threading.Thread(target=serve_dns, args=(dns, log, threading.Lock()), daemon=True).start()
    threading.Thread(target=web.serve_forever, daemon=True).start()
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
