"""``python -m daemon``: patch gevent first, then hand over to :mod:`daemon.runtime`."""

import gevent
from gevent import monkey

# gevent records every greenlet's spawning stack by default (for its debugging tools): a
# frame walk at each spawn, and the daemon spawns one greenlet per probe.
gevent.config.track_greenlet_tree = False
monkey.patch_all()

import sys  # noqa: E402 - everything below must see the patched socket, ssl, time

from daemon.runtime import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
