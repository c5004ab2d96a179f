"""Drives the blackbox exporter: COUNT probes of distinct URLs at CONCURRENCY, over keep-alive.

Its own process (pinned away from the exporter) so its CPU is not counted as the exporter's,
and a single-threaded ``selectors`` loop over raw sockets so that it is cheap enough to keep
the exporter saturated. Prints one JSON line: probes sent, probes that succeeded, seconds.
Usage: loadgen.py EXPORTER_PORT TARGET_PORT COUNT CONCURRENCY TIME_LIMIT [https]
(with ``https``, the targets are https URLs probed with the module ``https_2xx``)
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time


def main() -> None:
    bb_port, target_port, count, concurrency, limit = (int(a) for a in sys.argv[1:6])
    https = sys.argv[6:7] == ["https"]
    scheme, module = ("https", "https_2xx") if https else ("http", "http_2xx")
    selector = selectors.DefaultSelector()
    state = {"next": 0, "ok": 0, "done": 0}
    buffers: dict[socket.socket, bytearray] = {}

    def send_next(sock: socket.socket) -> bool:
        index = state["next"]
        if index >= count:
            return False
        state["next"] += 1
        target = f"{scheme}://127.0.0.1:{target_port}/bb/{index}"
        sock.sendall(
            f"GET /probe?module={module}&target={target} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{bb_port}\r\n\r\n".encode()
        )
        buffers[sock] = bytearray()
        return True

    started = time.monotonic()
    deadline = started + limit
    for _ in range(min(concurrency, count)):
        sock = socket.create_connection(("127.0.0.1", bb_port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(sock, selectors.EVENT_READ)
        send_next(sock)
    open_socks = len(buffers)
    while open_socks and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            chunk = sock.recv(65536)
            buf = buffers[sock]
            buf += chunk
            head_end = buf.find(b"\r\n\r\n")
            if not chunk:
                raise SystemExit("loadgen: the exporter closed a connection")
            if head_end < 0:
                continue
            head = bytes(buf[:head_end]).lower()
            length_at = head.find(b"content-length:")
            if length_at >= 0:
                length = int(head[length_at + 15 :].split(b"\r\n", 1)[0])
                if len(buf) < head_end + 4 + length:
                    continue
            elif b"transfer-encoding: chunked" in head:
                if not buf.endswith(b"\r\n0\r\n\r\n"):
                    continue
            else:
                raise SystemExit(f"loadgen: cannot frame this response: {head!r}")
            state["done"] += 1
            state["ok"] += b"\nprobe_success 1" in buf
            if not send_next(sock):
                selector.unregister(sock)
                sock.close()
                open_socks -= 1
    print(
        json.dumps(
            {"done": state["done"], "ok": state["ok"], "seconds": time.monotonic() - started}
        )
    )


if __name__ == "__main__":
    main()
