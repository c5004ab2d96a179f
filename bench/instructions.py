"""``python -m bench.instructions [GITREF ...]``: instructions per probe, counted by valgrind.

CPU seconds on a shared machine move by 10-20% from one minute to the next, more than most
single optimisations gain. Instructions executed do not: ``valgrind --tool=callgrind`` counts
the same total for the same code and inputs whatever else the machine is doing. This runs
``python -m daemon --once`` under callgrind over N and 3N distinct URLs of a local nginx (plain
http, then https with a full handshake each, as the ``https`` scenario), for the working tree
and for each GITREF (a temporary git worktree), and prints (I(3N) - I(N)) / 2N: the
instructions one more probe costs, start-up and the first imports left out.

Instructions are not time (OpenSSL's hand-written assembly does more per cycle than the
interpreter), so this ranks changes to the same code path; the CPU figures of ``python -m
bench`` remain the ones the bars judge. Needs valgrind and nginx; 127.0.0.1 only. Each
count takes about a minute (https, N=200).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.procs import ROOT, Processes, worktree


def count(checkout: Path, csv: Path, ca_file: Path, scratch: Path) -> int:
    """Instructions of one ``--once`` run of the daemon in ``checkout`` over ``csv``."""
    out = scratch / "callgrind.out"
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    for key in ("UPCHECK_CA_FILE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        env.pop(key, None)
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "daemon",
            "--once",
            "--targets",
            str(csv),
            "--concurrency",
            "50",
            "--timeout",
            "120",  # valgrind runs the daemon some 50 times slower
            "--results",
            str(scratch / "results.json"),
            "--log-level",
            "error",
            "--ca-file",
            str(ca_file),
        ],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if run.returncode != 0:
        sys.exit(f"bench.instructions: the daemon failed under valgrind: {run.stderr[-2000:]}")
    totals = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
    if totals is None:
        sys.exit("bench.instructions: no summary line in callgrind's output")
    out.unlink()
    return int(totals.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("gitrefs", nargs="*", help="older commits to count as well")
    parser.add_argument("-n", type=int, default=200, help="the smaller run's URLs (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="upcheck-instructions-") as tmp:
        scratch = Path(tmp)
        with Processes(scratch) as procs:
            port, tls_port, ca_file = procs.nginx(None)
            lists: dict[str, dict[int, Path]] = {}
            for scheme, at in (("http", port), ("https", tls_port)):
                for size in (args.n, 3 * args.n):
                    csv = scratch / f"{scheme}-{size}.csv"
                    rows = (f"{scheme}://127.0.0.1:{at}/i/{i}" for i in range(size))
                    csv.write_text("url\n" + "\n".join(rows) + "\n")
                    lists.setdefault(scheme, {})[size] = csv
            print("checkout      http        https   (instructions per probe)")
            for ref in ("working tree", *args.gitrefs):
                tree: contextlib.AbstractContextManager[Path] = (
                    contextlib.nullcontext(ROOT)
                    if ref == "working tree"
                    else worktree(ref, scratch)
                )
                with tree as checkout:
                    per_probe = []
                    for scheme in ("http", "https"):
                        small = count(checkout, lists[scheme][args.n], ca_file, scratch)
                        large = count(checkout, lists[scheme][3 * args.n], ca_file, scratch)
                        per_probe.append((large - small) / (2 * args.n))
                    print(f"{ref[:12]:<12} {per_probe[0]:>9,.0f} {per_probe[1]:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
