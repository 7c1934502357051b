"""The in-process LRU of decoded lists, bounded by entries and by estimated memory."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sized
from typing import Generic, TypeVar

V = TypeVar("V")

Key = tuple[str, str, str]  # (model, version, unit)


def decoded_size(items: Sized | None, raw_len: int) -> int:
    """Estimated bytes of a decoded list in memory: ~240 per ``{"id", "score"}`` item (dict,
    float, id string, list slot) plus the JSON length for the ids' characters. Within -5%/+20%
    of what tracemalloc measures for 10- to 500-item lists (tests/gateway/test_units.py)."""
    return 100 if items is None else 240 * len(items) + raw_len


class LocalCache(Generic[V]):
    """A bounded in-process LRU of decoded lists.

    Always correct: a model version's results never change once active, and keys carry the
    version. ``None`` entries remember units without a list. Bounded both by entries and by
    estimated memory (``decoded_size``), whichever is reached first.
    """

    def __init__(self, max_entries: int, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries if max_bytes != 0 else 0
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[Key, tuple[V | None, int]] = OrderedDict()

    def get(self, key: Key) -> tuple[bool, V | None]:
        """``(found, value)``."""
        try:
            value = self._data[key]
        except KeyError:
            return False, None
        self._data.move_to_end(key)
        return True, value[0]

    def put(self, key: Key, value: V | None, size: int = 0) -> None:
        """Remember ``value`` (``size`` bytes, see ``decoded_size``) for ``key``, evicting the
        least recently used entries while over a bound."""
        if self.max_entries <= 0:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._data[key] = (value, size)
        self.bytes += size
        data = self._data
        while len(data) > self.max_entries or (
            self.max_bytes is not None and self.bytes > self.max_bytes and len(data) > 1
        ):
            self.bytes -= data.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._data)
