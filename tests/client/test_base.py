"""What both clients share: the fork hook must not keep a dropped client alive."""

from __future__ import annotations

import gc
import weakref

from abgate.client import AsyncClient, Client


def test_a_dropped_client_is_collected_despite_the_fork_hook() -> None:
    sync = Client("http://127.0.0.1:1")
    sync.close()
    refs = [weakref.ref(sync), weakref.ref(AsyncClient("http://127.0.0.1:1"))]
    del sync
    gc.collect()
    assert [r() for r in refs] == [None, None]
