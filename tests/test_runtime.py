"""Process-wide policy of the composition root, in-process."""

from __future__ import annotations

import gc
import weakref

from daemon.runtime import settle_heap


def test_what_one_settle_froze_is_collected_after_the_next():
    """A big reload settles the heap (collect, then freeze the survivors). A reference cycle
    alive at that moment (a probe in flight) must not stay frozen, and so uncollectable, for
    good: reloads that replace much of the list every few seconds grew RSS without end."""

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    try:
        cycle = Cycle()
        alive = weakref.ref(cycle)
        settle_heap()  # frozen while still in use
        del cycle
        settle_heap()
        assert alive() is None
    finally:
        gc.unfreeze()
