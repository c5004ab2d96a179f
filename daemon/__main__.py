"""``python -m daemon``: patch gevent first, then hand over to :mod:`daemon.runtime`."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402 - everything below must see the patched socket, ssl, time

from daemon.runtime import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
