"""A burst of concurrent gzip ``/metrics`` scrapes, with ``/health`` timed while it lasts.

Its own process (pinned away from the daemon, like ``loadgen.py``) so that reading and
unzipping the scrapes costs the daemon's core nothing. COUNT threads each make one scrape,
all released at once; meanwhile one thread asks ``/health`` every 0.1 s and times each answer
(an answer that never comes counts as the time it was waited for). Every request has a
timeout and the whole burst a time limit. Prints one JSON line.
Usage: burst.py PORT COUNT TIME_LIMIT
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time


def get(port: int, path: str, timeout: float, gzip: bool = False) -> tuple[int, float]:
    """(status, seconds) of one GET; status 0 when it failed or timed out."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzip else {})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except (OSError, http.client.HTTPException):
        return 0, time.perf_counter() - started
    finally:
        conn.close()


def main() -> None:
    port, count, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + limit
    start = threading.Event()
    scrapes: list[tuple[int, float]] = []
    health: list[float] = []
    health_failed = 0
    lock = threading.Lock()

    def scrape() -> None:
        start.wait()
        answer = get(port, "/metrics", timeout=max(1.0, deadline - time.monotonic()), gzip=True)
        with lock:
            scrapes.append(answer)

    threads = [threading.Thread(target=scrape, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    start.set()
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        status, seconds = get(port, "/health", timeout=max(0.5, deadline - time.monotonic()))
        health.append(seconds)
        health_failed += status != 200
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    seconds = sorted(s for status, s in scrapes if status == 200)
    print(
        json.dumps(
            {
                "scrapes": count,
                "scrapes_ok": len(seconds),
                "scrape_s_max": seconds[-1] if seconds else None,
                "scrape_s_median": seconds[len(seconds) // 2] if seconds else None,
                "burst_s": time.monotonic() - started,
                "health_s": health,
                "health_failed": health_failed,
            }
        )
    )


if __name__ == "__main__":
    main()
