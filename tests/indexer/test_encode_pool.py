"""The encoder pool (``shopsearch index --workers N``): same vectors and summary as the in-process run, a clear
error when a worker dies (with the alias untouched and the run resumable), and the encoder recorded on the index."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest

from shopsearch.indexer.encode_pool import EncoderPool, EncoderPoolError, EncoderSpec, open_index_encoder
from shopsearch.indexer.encoder_record import INT8, EncoderRecord, check_query_encoder
from shopsearch.indexer.job import run_index
from shopsearch.indexer.quarantine import read_quarantine
from shopsearch.indexer.vector_cache import VectorCache

from .catalogs import good_rows, write_corrupted, write_jsonl
from .fakeenc import CrashingEncoder, HashEncoder
from .memsink import MemorySink

SUMMARY = ("read", "indexed", "quarantined", "unchanged", "deleted", "embedded", "cache_hits")


def _catalog(tmp_path):
    """Valid, invalid and duplicate-text rows; the duplicates repeat texts several chunks of 8 earlier, while
    those may still be in flight on the pool."""
    path, good = write_corrupted(tmp_path / "base.jsonl", n_good=60)
    dups = [dict(r, id=f"dup{i}") for i, r in enumerate(good[:30:3])]
    lines = path.read_bytes().split(b"\n")
    lines[-1:-1] = [json.dumps(d).encode() for d in dups]  # before the truncated last line
    path.write_bytes(b"\n".join(lines))
    return path


def _index(path, sink, enc, tmp_path, name, **kw):
    with VectorCache(tmp_path / f"{name}.sqlite") as cache:
        return run_index(path, sink, enc, alias="shop", progress=False, chunk_size=8, cache=cache,
                         quarantine_path=tmp_path / f"{name}.q.jsonl", **kw)


def _vectors(sink):
    return {pid: np.asarray(doc.vector) for pid, doc in sink.indices[sink.resolve_alias("shop")].items()}


def test_pool_gives_the_in_process_summary_and_vectors(tmp_path):
    path = _catalog(tmp_path)
    one, many = MemorySink(), MemorySink()
    ref = _index(path, one, HashEncoder(), tmp_path, "one")
    with EncoderPool(EncoderSpec(HashEncoder), workers=2, depth=3) as pool:
        got = _index(path, many, pool, tmp_path, "pool")
        assert {k: getattr(got, k) for k in SUMMARY} == {k: getattr(ref, k) for k in SUMMARY}
        assert got.read == got.indexed + got.quarantined + got.unchanged and got.embedded < got.indexed
        quarantined = {name: [replace(r, run=None) for r in read_quarantine(tmp_path / f"{name}.q.jsonl")]
                       for name in ("one", "pool")}  # the same rows, each stamped with its own run
        assert quarantined["one"] == quarantined["pool"] and quarantined["one"]
        again = _index(path, many, pool, tmp_path, "pool", mode="incremental")  # nothing changed
    assert (again.unchanged, again.indexed, again.embedded) == (ref.indexed, 0, 0)
    a, b = _vectors(one), _vectors(many)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_pool_of_the_tiny_model_matches_it_in_process(tmp_path, tiny_bi_encoder_dir, tiny_encoder):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(40))
    one, many = MemorySink(), MemorySink()
    ref = _index(path, one, tiny_encoder, tmp_path, "one")
    with open_index_encoder(tiny_bi_encoder_dir, workers=2, max_length=64, onnx_dir=tmp_path / "onnx") as pool:
        assert isinstance(pool, EncoderPool) and pool.fingerprint == tiny_encoder.fingerprint
        got = _index(path, many, pool, tmp_path, "pool")
    assert {k: getattr(got, k) for k in SUMMARY} == {k: getattr(ref, k) for k in SUMMARY}
    a, b = _vectors(one), _vectors(many)
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-4


def test_a_dead_worker_stops_the_run_clearly_and_a_rerun_resumes(tmp_path):
    sink = MemorySink()
    first = write_jsonl(tmp_path / "first.jsonl", good_rows(40))
    live = _index(first, sink, HashEncoder(), tmp_path, "cache").index
    rows = good_rows(40)
    rows[30]["title"] = "CRASH lamp"  # the only text not cached yet: chunk 4 of 5 goes to a worker, which dies
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(EncoderPoolError, match=r"encoder worker process died while embedding catalog lines "
                                               r"25-32.*alias where it was; rerun to resume"):
        with EncoderPool(EncoderSpec(CrashingEncoder), workers=2, depth=2) as pool:
            _index(path, sink, pool, tmp_path, "cache", mode="full")
    assert sink.resolve_alias("shop") == live  # the live catalog never moved
    rows[30]["title"] = "Crash-proof lamp"
    write_jsonl(path, rows)
    with EncoderPool(EncoderSpec(HashEncoder), workers=2) as pool:
        rerun = _index(path, sink, pool, tmp_path, "cache", mode="full")
    assert rerun.indexed == 40 and rerun.embedded == 1  # only the edited row: the rest came from the cache
    assert sink.resolve_alias("shop") == rerun.index != live and sink.list_indices("shop-v") == [live, rerun.index]


def test_ctrl_c_stops_the_workers_and_leaves_the_alias(tmp_path):
    sink = MemorySink()
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(64))
    live = _index(path, sink, HashEncoder(), tmp_path, "first").index

    def interrupt(queued):
        if queued >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with EncoderPool(EncoderSpec(HashEncoder), workers=2) as pool:
            _index(path, sink, pool, tmp_path, "second", mode="full", on_chunk=interrupt)
    assert sink.resolve_alias("shop") == live
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:  # terminated, being reaped
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def _hold_a_pool(pids) -> None:
    """A job that starts a pool, says its workers' pids, then waits to be killed."""
    with EncoderPool(EncoderSpec(HashEncoder), workers=2) as pool:
        pids.put(sorted(pool._executor._processes))
        time.sleep(120)


def test_workers_end_when_the_job_is_killed_with_sigkill():
    """kill -9, the OOM killer or ``timeout`` end the job with no chance to stop its pool: each worker notices it
    lost its parent and exits, rather than hold a model's memory for ever."""
    ctx = multiprocessing.get_context("spawn")
    pids = ctx.Queue()
    job = ctx.Process(target=_hold_a_pool, args=(pids,))
    job.start()
    workers = pids.get(timeout=60)
    assert len(workers) == 2
    os.kill(job.pid, signal.SIGKILL)
    job.join()
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)]


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_that_cannot_build_its_encoder_says_why(tmp_path):
    with pytest.raises(ValueError, match="model '/no/such/model': not a packaged model"):
        EncoderPool(EncoderSpec(_bad_model_encoder), workers=1)


def _bad_model_encoder():
    from shopsearch.indexer.embedder import resolve_model_dir

    return resolve_model_dir("/no/such/model")


def test_the_encoder_is_recorded_on_the_index_and_checked_by_the_query_side(tmp_path, caplog):
    path = write_jsonl(tmp_path / "c.jsonl", good_rows(10))
    sink = MemorySink()
    int8 = HashEncoder()
    int8.fingerprint += f"|{INT8}"  # the same model's int8 vectors
    _index(path, sink, int8, tmp_path, "int8")
    record = EncoderRecord.from_meta(sink.index_meta("shop"))
    assert record == EncoderRecord(INT8, "hash|d=8|onnx-int8", 8) and record.model_fingerprint == "hash|d=8"
    assert check_query_encoder(sink, "shop", HashEncoder()) is None  # same model at full precision: compatible
    warning = check_query_encoder(sink, "shop", HashEncoder(name="other"))
    assert warning and "other|d=8" in warning and "do not match" in warning and warning in caplog.text
    _index(path, sink, HashEncoder(), tmp_path, "int8", mode="incremental")  # back to torch: re-embedded, recorded
    assert EncoderRecord.from_meta(sink.index_meta("shop")).kind == "torch"


def test_index_metadata_round_trips_on_the_real_engines(engine, alias):
    engine.create_index(f"{alias}-v1", 8)
    engine.swap_alias(alias, f"{alias}-v1")
    assert engine.index_meta(alias) == {}
    engine.set_index_meta(f"{alias}-v1", {"encoder": INT8, "dims": "8"})
    engine.set_index_meta(f"{alias}-v1", {"encoder_fingerprint": "m|onnx-int8"})  # merged over the first
    assert engine.index_meta(alias) == {"encoder": INT8, "dims": "8", "encoder_fingerprint": "m|onnx-int8"}


def test_bad_pool_arguments_are_named():
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        EncoderPool(EncoderSpec(HashEncoder), workers=0)
    with pytest.raises(ValueError, match="encoder must be one of torch, onnx-int8; got 'fp8'"):
        with open_index_encoder("m", kind="fp8", onnx_dir="/tmp"):
            pass


def test_automatic_worker_count_embeds_small_catalogs_and_cuda_in_process(tiny_bi_encoder_dir, tmp_path):
    from shopsearch.indexer.embedder import BiEncoder
    from shopsearch.indexer.encode_pool import SMALL_CATALOG_BYTES

    for kw in ({"catalog_bytes": SMALL_CATALOG_BYTES - 1}, {"cuda": True}):
        with open_index_encoder(tiny_bi_encoder_dir, workers=0, max_length=64, onnx_dir=tmp_path, **kw) as enc:
            assert type(enc) is BiEncoder
