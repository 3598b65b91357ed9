"""A thread-safe least-recently-used cache bounded by the summed size of its values (bytes).

Used for image embeddings (:class:`~ovsam_core.embedding.EmbeddingLRU`) and decoded images
(:class:`~ovsam_core.hosts.serving.BytesLRU`).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, Optional, TypeVar

T = TypeVar("T")


class SizedLRU(Generic[T]):
    """LRU bounded by ``max_bytes`` of ``size(value)``; the least recently used values leave
    first. A value larger than ``max_item_fraction * max_bytes`` is not kept (and replaces, i.e.
    drops, an older value under its key)."""

    def __init__(self, max_bytes: int, size: Callable[[T], int], max_item_fraction: float = 1.0) -> None:
        self.max_bytes = int(max_bytes)
        self._size = size
        self._max_item = int(self.max_bytes * max_item_fraction)
        self._items: "OrderedDict[Hashable, T]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Summed size of the values held."""
        return self._bytes

    def get(self, key: Hashable) -> Optional[T]:
        """The value (now most recently used), or None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: Hashable, value: T) -> None:
        """Keep ``value`` under ``key``, evicting the least recently used values over budget."""
        n = self._size(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._size(self._items.pop(key))
            if n > self._max_item:
                return
            self._items[key] = value
            self._bytes += n
            while self._bytes > self.max_bytes and self._items:
                _, gone = self._items.popitem(last=False)
                self._bytes -= self._size(gone)

    def clear(self) -> None:
        """Drop every value."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
