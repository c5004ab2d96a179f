"""``python -m bench.dns_resolvers [--names N] [--rounds R]``: the probe's resolvers compared.

gevent's default (getaddrinfo in its pool of 10 threads, the daemon's resolver before) against
c-ares on the event loop (``AresResolver``, the daemon's now). Each resolver runs in its own
process, inside a fresh network and mount namespace (``unshare -mn``, root) whose resolv.conf
names the DNS stub of tests/dns_stub.py on 127.0.0.1:53, so nothing leaves the machine. The
stub is a separate process: its CPU is not counted.

For each resolver and round: ``cold``, N distinct names at 100 lookups in flight; ``again``,
the same N names once more (c-ares answers from its cache, getaddrinfo asks again); and
``dead``, N fresh names looked up while 50 lookups of a domain that never answers are in
flight, each given up after 1 s, as a probe's deadline would. Figures: lookups a second,
and CPU (user + system, all threads) per 1,000 lookups.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 100


def inner(kind: str, names: int, rounds: int) -> None:
    from gevent import monkey

    monkey.patch_all()
    import resource
    import time

    import gevent
    from gevent.pool import Pool

    from daemon.probe.connection import AresResolver, system_resolver

    resolve = AresResolver() if kind == "c-ares" else system_resolver

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def lookup(host: str) -> bool:
        try:
            with gevent.Timeout(1.0):
                return bool(resolve(host, 80))
        except (gevent.Timeout, OSError):
            return False

    def measure(hosts: list[str]) -> dict[str, float]:
        pool = Pool(CONCURRENCY)
        cpu0, wall0 = cpu(), time.perf_counter()
        ok = sum(pool.imap_unordered(lookup, hosts))
        wall, used = time.perf_counter() - wall0, cpu() - cpu0
        return {
            "ok": ok,
            "per_s": len(hosts) / wall,
            "cpu_ms_per_1k": used * 1000 / len(hosts) * 1000,
        }

    out = []
    for r in range(rounds):
        hosts = [f"n{r}-{i}.up.test" for i in range(names)]
        row = {"cold": measure(hosts), "again": measure(hosts)}
        dead = [gevent.spawn(lookup, f"d{r}-{i}.dead.test") for i in range(50)]
        gevent.sleep(0.05)  # all 50 sent
        row["dead"] = measure([f"m{r}-{i}.up.test" for i in range(names)])
        gevent.joinall(dead)
        out.append(row)
    print(json.dumps(out))


def outer(names: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        conf = Path(scratch) / "resolv.conf"
        conf.write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
        namespace = [
            "unshare",
            "--mount",
            "--net",
            "--",
            "sh",
            "-c",
            'ip link set lo up && mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(conf),
        ]
        stub = [sys.executable, "-m", "tests.dns_stub", "--http-port", "8080", "--"]
        print(f"{names} names, {CONCURRENCY} in flight, {rounds} rounds; per round:")
        print(f"{'resolver':10} {'case':6} {'ok':>6} {'lookups/s':>10} {'CPU ms/1k':>10}")
        for kind in ("threads", "c-ares"):
            me = [sys.executable, "-m", "bench.dns_resolvers", "--inner", kind]
            argv = [*namespace, *stub, *me, "--names", str(names), "--rounds", str(rounds)]
            proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                sys.exit(f"bench: {kind} failed:\n{proc.stderr}")
            for row in json.loads(proc.stdout):
                for case, m in row.items():
                    print(
                        f"{kind:10} {case:6} {m['ok']:>6} {m['per_s']:>10,.0f} "
                        f"{m['cpu_ms_per_1k']:>10,.1f}"
                    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inner", choices=("threads", "c-ares"))
    args = parser.parse_args()
    if args.inner:
        inner(args.inner, args.names, args.rounds)
    else:
        outer(args.names, args.rounds)


if __name__ == "__main__":
    main()
