"""Which encoder embedded an index's products, recorded on the index, and the query side's check against it.

Every indexing run records on the index it writes (``IndexSink.set_index_meta``) the encoder's kind (``torch``:
the sentence-transformers model, fp32 on CPU or fp16 on CUDA; ``onnx-int8``: the same model quantised to int8 and
run by ONNX Runtime, ``shopsearch index --encoder onnx-int8``), its fingerprint and dims. A searcher compares its
query encoder with the record: another model (or other weights, dims) means the two vector spaces do not match,
which is warned about loudly; int8 document vectors of the same model are compatible with full-precision queries
(their measured cost is in bench/RESULTS.md), so that is only logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from shopsearch.settings import INDEX_ENCODERS

log = logging.getLogger(__name__)

TORCH, INT8 = INDEX_ENCODERS
INT8_SUFFIX = f"|{INT8}"  # appended to the model's fingerprint: int8 vectors get their own cache keys and hashes
# Int8 vectors cached before 2026-12-03 came from batched runs, so each depended on the rows beside it; the vectors
# cached since (each text run alone) are keyed with this too, so an older cache's are never read again.
INT8_CACHE_EPOCH = "|solo"


def cache_fingerprint(fingerprint: str) -> str:
    """The fingerprint an encoder's vectors are cached under (:func:`~shopsearch.indexer.vector_cache.cache_key`).

    >>> cache_fingerprint("m|abc|len=256|d=384|onnx-int8"), cache_fingerprint("m|abc|len=256|d=384")
    ('m|abc|len=256|d=384|onnx-int8|solo', 'm|abc|len=256|d=384')
    """
    return fingerprint + INT8_CACHE_EPOCH if fingerprint.endswith(INT8_SUFFIX) else fingerprint


class _MetaReader(Protocol):
    def index_meta(self, index: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class EncoderRecord:
    """The encoder of an index's vectors: ``kind`` ("torch" or "onnx-int8"), ``fingerprint``, ``dims``.

    >>> r = EncoderRecord.of_fingerprint("all-MiniLM-L6-v2|abc|len=256|d=384|onnx-int8", 384)
    >>> r.kind, r.model_fingerprint
    ('onnx-int8', 'all-MiniLM-L6-v2|abc|len=256|d=384')
    >>> EncoderRecord.from_meta(r.to_meta()) == r
    True
    """

    kind: str
    fingerprint: str
    dims: int

    @classmethod
    def of_fingerprint(cls, fingerprint: str, dims: int) -> "EncoderRecord":
        """The record of an encoder with this fingerprint (the kind is read off its suffix)."""
        return cls(INT8 if fingerprint.endswith(INT8_SUFFIX) else TORCH, fingerprint, int(dims))

    @classmethod
    def of(cls, encoder: Any) -> "EncoderRecord":
        """The record of an encoder (anything with ``fingerprint`` and ``dims``)."""
        return cls.of_fingerprint(str(encoder.fingerprint), int(encoder.dims))

    @property
    def model_fingerprint(self) -> str:
        """The fingerprint of the model the vectors come from, whatever the precision they were computed at."""
        return self.fingerprint.removesuffix(INT8_SUFFIX)

    def to_meta(self) -> dict[str, str]:
        return {"encoder": self.kind, "encoder_fingerprint": self.fingerprint, "dims": str(self.dims)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> "EncoderRecord | None":
        """The record in an index's metadata, or None (an index written before records existed)."""
        if "encoder_fingerprint" not in meta:
            return None
        return cls(str(meta.get("encoder", TORCH)), str(meta["encoder_fingerprint"]), int(meta.get("dims", 0)))


def check_query_encoder(engine: _MetaReader, index: str, encoder: Any) -> str | None:
    """Compare the query ``encoder`` with the one recorded on ``index`` (an alias or index) and log the outcome.

    Returns:
        The warning (also logged) when the index's vectors come from another model, else None (an index without
        a record, or one that cannot be read, is logged at INFO and passes).

    >>> check_query_encoder(engine, "products", load_query_encoder(...))  # doctest: +SKIP
    """
    try:
        record = EncoderRecord.from_meta(engine.index_meta(index))
    except Exception as exc:  # noqa: BLE001 - a missing index or an engine outage is reported by the search itself
        log.info("encoder check skipped for %s (%s: %s)", index, type(exc).__name__, exc)
        return None
    query_fp = str(encoder.fingerprint).removesuffix(INT8_SUFFIX)
    if record is None:
        log.info("index %s records no encoder (indexed before encoder records); cannot check it", index)
        return None
    if record.model_fingerprint != query_fp:
        message = (f"index {index!r} was embedded by {record.fingerprint!r} ({record.kind}) but queries are "
                   f"encoded by {encoder.fingerprint!r}: the vectors do not match; query with that model "
                   "(--model / the `model` setting) or reindex")
        log.warning(message)
        return message
    if record.kind == INT8:
        log.info("index %s holds int8 (onnx-int8) vectors of %s; queries are encoded at full precision", index,
                 record.model_fingerprint)
    return None
