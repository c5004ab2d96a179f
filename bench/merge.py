"""``python -m bench.merge [--targets N] [--members M] [GITREF ...]``: the merging member's
publish with ``--shard``, and how long it holds the event loop.

The parts are written by the daemon's own code: ``N`` URLs (1% down) split over ``M`` members by
the rendezvous ring, each member's store seeded with a week of history as the ``page`` scenario
does, each part its :class:`~daemon.outputs.document.Snapshot`'s JSON. Then, for the working
tree and each GITREF (a temporary git worktree), a fresh process (gevent patched, the heap
frozen as the daemon freezes it after a load) runs the merging member's ``publish`` once on
local files while a greenlet asks to wake every 10 ms: the longest gap between two of its
wake-ups is the longest stretch the publish held the hub, which is what a probe falling due
meanwhile would start late by; "writes aside" is the longest gap less the time spent inside
it writing the part and the combined file and page (blocking disk I/O with fsync, the same as
without sharding). Also: the publish's wall time and CPU, how often the ticker ran during it, the
parts' read and the writes, the longest garbage collection, and the process's RSS before and
at its peak (taken when the publish returns). Every checkout merges the same parts at the
same instant, so the combined file and page must come out with the same hashes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import ROOT, worktree

TICK = 0.010  # the ticker's sleep; a gap is the time past that


def write_parts(folder: Path, targets: int, members: int, now: float) -> dict[str, int]:
    """The members' parts in ``folder`` as ``<member>.json``, written by the daemon's code."""
    from bench.scenarios import _full_history_document
    from daemon.model import ProbeResult, Target
    from daemon.outputs.document import Snapshot
    from daemon.sharding.rendezvous import Ring
    from daemon.store import ResultsStore

    names = [f"m{k}" for k in range(members)]
    ring = Ring(names)
    rows = [(f"http://127.0.0.1:9/p/{i}", f"p{i}") for i in range(targets)]
    down = {name for i, (_, name) in enumerate(rows) if i % 100 == 0}
    history = json.loads(_full_history_document([rows[1], rows[100]], down, now))
    healthy, failing = history["results"]
    stores = {name: ResultsStore() for name in names}
    for url, name in rows:
        store = stores[ring.owner(url)]
        target = Target(url, name)
        store.add(target)
        template = failing if name in down else healthy
        state = store.get(url)
        assert state is not None
        state.seed(
            template["history"], template["consecutive_failures"], template["uptime_buckets"]
        )
        up = name not in down
        store.record(
            target,
            ProbeResult(up, 200 if up else None, 0.004, (0, 0.001, 0, 0.002, 0.001), 3, 0,
                        False, None, None if up else "connect",
                        None if up else "connection refused", now - 20 + (hash(url) % 20)),
        )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, store in stores.items():
        data = Snapshot(store, "bench", True).document_json
        (folder / f"{name}.json").write_bytes(data)
        sizes[name] = len(data)
    return sizes


def _peak_rss_mib() -> float:
    """VmHWM: unlike ``ru_maxrss``, not carried over from the parent across exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(
    checkout: str, parts: str, work: str, merger: str, now: float, pause: str
) -> dict[str, Any]:
    """In a process of its own: the merging member's publish, on ``checkout``'s code."""
    sys.path.insert(0, checkout)
    from gevent import monkey

    monkey.patch_all()
    import gc
    import hashlib
    import inspect

    import gevent

    from daemon.outputs.results_file import LocalResultsFile
    from daemon.outputs.shared_results import SharedResults

    results = Path(work) / "results.json"
    file = LocalResultsFile(str(results))
    os.makedirs(file.parts_dir)
    own = b""
    for name in sorted(os.listdir(parts)):
        if name == f"{merger}.json":
            own = (Path(parts) / name).read_bytes()
        else:
            shutil.copy(Path(parts) / name, Path(file.parts_dir) / name)

    io: dict[str, float] = {}
    writes: list[tuple[float, float]] = []  # when the blocking writes ran

    def timed(method: str) -> None:
        inner = getattr(file, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                end = time.perf_counter()
                io[method] = io.get(method, 0.0) + end - start
                if method.startswith("write"):
                    writes.append((start, end))

        setattr(file, method, call)

    for method in ("write_part", "read_parts", "write_document"):
        timed(method)

    class Own:  # what publish() reads of the snapshot: this member's part
        document_json = own

    extra: dict[str, Any] = {}
    if "pause" in inspect.signature(SharedResults).parameters:
        from daemon import runtime

        loop_turn = getattr(runtime, "yield_to_the_loop", None)
        extra["pause"] = loop_turn if pause == "loop" and loop_turn else lambda: gevent.sleep(0)
    sink = SharedResults(file, lambda: merger, lambda: True, "bench", 60.0, lambda: now, **extra)

    collections: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            collections.append(time.perf_counter() - started.pop())

    gaps: list[tuple[float, float]] = []  # (when it woke, how late)
    stop = False

    def ticker() -> None:
        while not stop:
            before = time.perf_counter()
            gevent.sleep(TICK)
            after = time.perf_counter()
            gaps.append((after, after - before - TICK))

    gc.collect()
    gc.freeze()  # as the daemon does after a load: the long-lived heap is not walked again
    rss_before = _peak_rss_mib()
    tick = gevent.spawn(ticker)
    gevent.sleep(0.05)
    gc.callbacks.append(on_gc)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sink.publish(Own())  # type: ignore[arg-type]
    wall1, cpu1 = time.perf_counter(), time.process_time()
    gc.callbacks.remove(on_gc)
    gevent.sleep(0.05)
    stop = True
    tick.join()
    peak_rss = _peak_rss_mib()
    # Every wake-up from the publish's start to the first one after it returned (its garbage
    # is freed on the way out); and each gap less the time the writes took within it.
    first_after = next((at for at, _ in gaps if at > wall1), wall1)
    during = [(at, late) for at, late in gaps if wall0 < at <= first_after]
    apart = [
        late - sum(max(0.0, min(at, end) - max(at - TICK - late, start)) for start, end in writes)
        for at, late in during
    ]
    body = results.read_bytes()
    page = results.with_suffix(".html").read_bytes()
    document = json.loads(body)
    return {
        "publish_s": wall1 - wall0,
        "publish_cpu_s": cpu1 - cpu0,
        "longest_stall_s": max((late for _, late in during), default=0.0),
        "longest_stall_apart_s": max(apart, default=0.0),
        "wakeups_during": len(during),
        "read_parts_s": io.get("read_parts", 0.0),
        "write_part_s": io.get("write_part", 0.0),
        "write_document_s": io.get("write_document", 0.0),
        "longest_gc_s": max(collections, default=0.0),
        "collections": len(collections),
        "peak_rss_mib": peak_rss,
        "rss_before_mib": rss_before,
        "targets_total": document["targets_total"],
        "file_mib": len(body) / 2**20,
        "page_mib": len(page) / 2**20,
        "file_sha": hashlib.sha256(body).hexdigest()[:12],
        "document_sha": hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[
            :12
        ],
        "page_sha": hashlib.sha256(page).hexdigest()[:12],
    }


def run(
    checkout: Path, parts: Path, work: Path, merger: str, now: float, pause: str
) -> dict[str, Any]:
    work.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "bench.merge", "--measure", str(checkout), str(parts), str(work),
         merger, repr(now), pause],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if out.returncode != 0:
        sys.exit(f"bench.merge: the measuring process failed: {out.stderr[-3000:]}")
    shutil.rmtree(work)
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


COLUMNS = (
    ("longest_stall_s", "longest stall s", "{:.3f}"),
    ("longest_stall_apart_s", "writes aside s", "{:.3f}"),
    ("publish_s", "publish s", "{:.2f}"),
    ("publish_cpu_s", "cpu s", "{:.2f}"),
    ("wakeups_during", "ticks", "{}"),
    ("read_parts_s", "read s", "{:.3f}"),
    ("write_part_s", "write part s", "{:.3f}"),
    ("write_document_s", "write file+page s", "{:.3f}"),
    ("longest_gc_s", "longest gc s", "{:.3f}"),
    ("rss_before_mib", "RSS before MiB", "{:.0f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("document_sha", "document", "{}"),
    ("page_sha", "page", "{}"),
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.merge", description=__doc__)
    parser.add_argument("gitrefs", nargs="*", help="older commits to measure as well")
    parser.add_argument("--targets", type=int, default=50_000)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per checkout")
    parser.add_argument(
        "--pause",
        choices=("loop", "callback"),
        default="loop",
        help="how a paced merge pauses: as the daemon wires it (a turn of the event loop), or "
        "with gevent.sleep(0) as the other paced builders do (default: loop)",
    )
    parser.add_argument("--measure", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        checkout, parts, work, merger, now, pause = args.measure
        print(json.dumps(measure(checkout, parts, work, merger, float(now), pause)))
        return 0
    with tempfile.TemporaryDirectory(prefix="upcheck-merge-") as tmp:
        scratch = Path(tmp)
        now = time.time()
        sizes = write_parts(scratch / "parts", args.targets, args.members, now)
        merger = sorted(sizes)[0]
        print(
            f"{args.targets:,} URLs over {args.members} members, parts of "
            + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sizes.items())
        )
        print("checkout      " + " | ".join(title for _, title, _ in COLUMNS))
        with contextlib.ExitStack() as stack:
            trees = [("working tree", ROOT)] + [
                (ref, stack.enter_context(worktree(ref, scratch / f"tree-{n}")))
                for n, ref in enumerate(args.gitrefs)
            ]
            for _ in range(args.rounds):
                for ref, checkout in trees:
                    figures = run(
                        checkout, scratch / "parts", scratch / "work", merger, now + 1, args.pause
                    )
                    cells = [fmt.format(figures[key]) for key, _, fmt in COLUMNS]
                    print(f"{ref[:12]:<12}  " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
