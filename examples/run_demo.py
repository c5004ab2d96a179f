"""``make run``: start the demo target server and the daemon on it; Ctrl-C stops both.

Both run as child processes of this one so that a single Ctrl-C (or SIGTERM) reaches both and
the daemon gets to write its results file on the way out.
"""

import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEMO_PORT = int(os.environ.get("DEMO_PORT", "8081"))
LISTEN = os.environ.get("UPCHECK_LISTEN", "127.0.0.1:8080")


def wait_for_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def main() -> int:
    python = sys.executable
    demo = subprocess.Popen(
        [python, os.path.join(HERE, "demo_targets.py"), "--port", str(DEMO_PORT)]
    )
    if not wait_for_port(DEMO_PORT):
        demo.terminate()
        print(f"demo target server did not start on 127.0.0.1:{DEMO_PORT}", file=sys.stderr)
        return 1
    daemon = subprocess.Popen(
        [
            python,
            "-m",
            "daemon",
            "--targets",
            os.path.join(HERE, "demo.csv"),
            "--listen",
            LISTEN,
            "--interval",
            "5",
            "--reload-interval",
            "5",
            "--publish-interval",
            "5",
            "--results",
            os.path.join(ROOT, "results", "results.json"),
        ],
        cwd=ROOT,
    )
    print(
        f"\n  upcheck is watching the demo targets.\n"
        f"  status page  http://{LISTEN}/\n"
        f"  metrics      http://{LISTEN}/metrics\n"
        f"  results      http://{LISTEN}/results  (and results/results.json)\n"
        f"  Edit examples/demo.csv and it is reloaded within 5 s. Ctrl-C stops everything.\n",
        file=sys.stderr,
        flush=True,
    )

    def forward(signum, _frame):
        for child in (daemon, demo):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = daemon.wait()
    if demo.poll() is None:
        demo.terminate()
    demo.wait()
    return code


if __name__ == "__main__":
    sys.exit(main())
