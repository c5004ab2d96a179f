"""A target that answers every request exactly DELAY seconds after it has read it.

One thread per connection and ``time.sleep`` (no event loop) so the delay itself is precise;
the delay actually served is measured here too and written to STATS on SIGTERM, so the report
can show how exact the reference was. The headers and the body go out in two segments, as
from most real servers, so the probe's kernel timing must follow an answer across reads.
Usage: delay_server.py PORT DELAY STATS
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time

BODY = b"late\n"


def main() -> None:
    port, delay, stats_path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    served: list[float] = []
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each send a segment
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            read_at = time.perf_counter()
            is_probe = not data.startswith(b"GET /up ")
            end = read_at + (delay if is_probe else 0.0)
            while (left := end - time.perf_counter()) > 0:
                time.sleep(left)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(BODY)
            )
            conn.sendall(BODY)
            if is_probe:
                served.append(time.perf_counter() - read_at)

    def stop(*_: object) -> None:
        with open(stats_path, "w") as out:
            out.write("\n".join(f"{s:.6f}" for s in served))
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
