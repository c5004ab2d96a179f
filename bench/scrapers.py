"""The load of issue #17's bar at 50k targets, for one window: two Prometheus servers each
scraping ``/metrics`` every 15 s (phased apart, with ``Accept-Encoding: gzip`` as Prometheus
sends it) and the status page ``GET /`` every 30 s.

Its own process (pinned away from the daemon, like ``loadgen.py`` and ``burst.py``) so that
reading and unzipping the answers costs the daemon's core nothing. One thread per schedule; a
request goes out at its tick, or as soon as the one before it on that schedule ended if that
ran past the tick (a Prometheus scrape loop never overlaps itself). Every request has a
timeout (10 s for a scrape, Prometheus's default ``scrape_timeout``; 30 s for the page) and
the whole run a time limit.

The window is bounded by scraper A's first scrape (at 0 s) and its last (at SECONDS): from
each it keeps the lines of ``upcheck_probe_lateness_seconds`` and ``upcheck_probes_total``,
and the daemon's CPU time (``/proc/PID/stat``) and the machine's busy time, per CPU, when it
arrived,
so the figures cover exactly this load and nothing the bench does around it.
Usage: scrapers.py PORT PID SECONDS
Prints one JSON line: every request (schedule, tick, seconds, status, bytes) and the two ends.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import sys
import threading
import time
import zlib
from typing import Any

# (name, path, first tick s, every s, timeout s); scraper A's ticks bound the window.
SCHEDULES = (
    ("scraper-a", "/metrics", 0.0, 15.0, 10.0),
    ("scraper-b", "/metrics", 7.0, 15.0, 10.0),
    ("page", "/", 11.0, 30.0, 30.0),
)
_KEPT = re.compile(
    rb"^(?:upcheck_probe_lateness_seconds_(?:bucket|count|sum)|upcheck_probes_total)[{ ].*$",
    re.MULTILINE,
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def busy_seconds() -> dict[str, float]:
    """CPU seconds spent busy so far (anything but idle and iowait), by every process: the
    whole machine's (``cpu``) and each CPU's (``cpu0``, ``cpu1``...)."""
    busy = {}
    with open("/proc/stat") as stat:
        for line in stat:
            if not line.startswith("cpu"):
                break
            name, *rest = line.split()
            fields = [int(x) for x in rest]
            busy[name] = (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK
    return busy


def get(port: int, path: str, timeout: float) -> tuple[int, bytes, int, float]:
    """(status, body unzipped, bytes sent, seconds to the last byte) of one GET; status 0 when
    it failed, timed out, or a gzip body did not unzip."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Accept-Encoding": "gzip"} if path == "/metrics" else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        seconds, sent = time.perf_counter() - started, len(body)
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)  # an older daemon answers plain: taken as it is
        return response.status, body, sent, seconds
    except (OSError, http.client.HTTPException, EOFError, zlib.error):
        return 0, b"", 0, time.perf_counter() - started
    finally:
        conn.close()


def main() -> None:
    port, pid, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    limit = seconds + max(timeout for *_, timeout in SCHEDULES) + 5
    start = time.monotonic()
    deadline = start + limit
    requests: list[dict[str, Any]] = []
    ends: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def run(name: str, path: str, first: float, every: float, timeout: float) -> None:
        # Scraper A's last tick is the window's end; the others' ticks fall inside it.
        until = seconds + 1e-6 if name == "scraper-a" else seconds - 1e-6
        ticks = [first + k * every for k in range(int((until - first) // every) + 1)]
        for index, tick in enumerate(ticks):
            time.sleep(max(0.0, start + tick - time.monotonic()))
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sent = time.monotonic() - start
            status, body, wire, took = get(port, path, min(timeout, left))
            arrived = time.monotonic() - start
            cpu, busy = cpu_seconds(pid), busy_seconds()
            if path == "/metrics" and status == 200 and not body.startswith(b"# HELP"):
                status = 0  # not an exposition: counted as failed
            record = {
                "who": name,
                "tick": tick,
                "sent": sent,
                "seconds": took,
                "status": status,
                "bytes": len(body),
                "bytes_sent": wire,
            }
            if name == "scraper-a" and index in (0, len(ticks) - 1) and status == 200:
                end = {
                    "at": arrived,
                    "cpu_s": cpu,
                    "busy_s": busy,
                    "lines": [m.decode() for m in _KEPT.findall(body)],
                }
                with lock:
                    ends["first" if index == 0 else "last"] = end
            with lock:
                requests.append(record)

    threads = [threading.Thread(target=run, args=s, daemon=True) for s in SCHEDULES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    with lock:
        requests.sort(key=lambda r: r["sent"])
        print(json.dumps({"window_s": seconds, "requests": requests, **ends}))


if __name__ == "__main__":
    main()
