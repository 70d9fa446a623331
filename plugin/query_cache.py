"""An LRU cache of query embeddings, keyed by normalised query text (shoppers repeat the same queries a lot)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol, Sequence

import numpy as np

from shopsearch.text import normalise_query


class Embedder(Protocol):
    """Anything that embeds a batch of texts into unit vectors (shopsearch.indexer.embedder.BiEncoder does)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class QueryEmbeddingCache:
    """Embeds queries through ``embedder``, remembering the last ``maxsize`` distinct normalised queries.

    Thread-safe (the API serves requests from several threads); the model call happens outside the lock.

    Args:
        embedder: has ``encode(list[str]) -> np.ndarray`` of unit rows.
        maxsize: entries kept (>= 0; 0 disables caching).

    Raises:
        ValueError: ``maxsize`` is negative or not an integer.

    >>> class Ones:
    ...     def encode(self, texts): return np.ones((len(texts), 2), dtype=np.float32)
    >>> cache = QueryEmbeddingCache(Ones(), maxsize=4)
    >>> cache.embed("Lamp").tolist(), cache.embed("lamp ").tolist(), (cache.hits, cache.misses)
    ([1.0, 1.0], [1.0, 1.0], (1, 1))
    """

    def __init__(self, embedder: Embedder, maxsize: int = 2048):
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 0:
            raise ValueError(f"embed_cache_size must be an integer >= 0, got {maxsize!r}")
        self.embedder = embedder
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def embed(self, query: str) -> np.ndarray:
        """The query's embedding, a read-only ``(dims,)`` float32 vector (cached).

        The cache key is :func:`~shopsearch.text.normalise_query`, and so is the text embedded: a cached vector never
        depends on which spelling came first (case-folding is safe for the default all-MiniLM-L6-v2, whose
        tokenizer lower-cases anyway).
        """
        key = normalise_query(query)
        with self._lock:
            vec = self._entries.get(key)
            if vec is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return vec
            self.misses += 1
        vec = np.asarray(self.embedder.encode([key]), dtype=np.float32)[0]
        vec.setflags(write=False)  # shared between requests: nobody may modify it in place
        if self.maxsize:
            with self._lock:
                self._entries[key] = vec
                self._entries.move_to_end(key)
                while len(self._entries) > self.maxsize:
                    self._entries.popitem(last=False)
        return vec
