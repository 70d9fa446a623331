"""Export a torch model to ONNX with torch's exporter, quantise it with ONNX Runtime's, and load it for the CPU.

Shared by the query encoder (indexer/onnx_encoder.py, fp32; int8 for indexing, indexer/onnx_int8.py) and the
cross-encoder (reranker/onnx_cross_encoder.py, int8). Export uses ``torch.onnx.export(dynamo=True)`` (the
torch.export-based exporter; needs ``onnxscript``) with the batch and sequence axes dynamic; quantisation uses
``onnxruntime.quantization.quantize_dynamic`` with per-channel int8 weights. sentence-transformers' own ONNX
backend would be the library route, but it needs optimum-onnx, whose only release requires transformers < 4.58
(this project pins transformers 5).

Every file is written under a temporary name and renamed into place, so a process loading an export never reads
half a file, and concurrent exports of one model end with one complete file.
"""

from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from shopsearch.atomic_write import write_atomically

from .encode_pool import physical_cores

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime
    import torch

# The opset torch's exporter writes natively (asking for another makes it convert the graph afterwards).
OPSET = 18


def onnx_available() -> bool:
    """True when ``onnx``, ``onnxscript`` (torch's exporter) and ``onnxruntime`` (to run and quantise) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def exportable_copy(model: "torch.nn.Module") -> "torch.nn.Module":
    """A float32 CPU copy of a Hugging Face ``model`` with eager attention, for :func:`export_onnx` (the served
    model is left as it is).

    Eager attention exports to a smaller graph than SDPA (no NaN guards, fewer reshapes): its int8 cross-encoder
    ran ~5% faster on this CPU, as fast as the TorchScript exporter's graph did.
    """
    import copy

    out = copy.deepcopy(model).float().cpu()
    out.set_attn_implementation("eager")
    return out


def export_onnx(module: "torch.nn.Module", inputs: Mapping[str, "torch.Tensor"], output_name: str,
                path: Path) -> None:
    """Export ``module`` (fp32, CPU) to the single file ``path``, written atomically.

    Args:
        module: called as ``module(*inputs.values())``; put in eval mode here.
        inputs: sample tensors by input name, each ``(batch, sequence)``; both axes are exported dynamic, so the
            samples should have a batch and a sequence of at least 2 (torch.export specialises sizes 0 and 1).
        output_name: the name of the graph's one output (must not clash with a tensor inside the graph, e.g.
            "embedding" in a BERT).
        path: the ``.onnx`` file to write (its folder must exist).

    Raises:
        ImportError: onnxscript is missing. Exception: whatever torch's exporter raises on an unsupported model.

    >>> export_onnx(torch.nn.Linear(4, 1), {"x": torch.zeros(2, 4)}, "y", Path("/tmp/l.onnx"))  # doctest: +SKIP
    """
    import torch

    dynamic = torch.export.Dim.DYNAMIC
    program = torch.onnx.export(module.eval(), tuple(inputs.values()), dynamo=True, input_names=list(inputs),
                                output_names=[output_name], opset_version=OPSET, verbose=False,
                                dynamic_shapes=tuple({0: dynamic, 1: dynamic} for _ in inputs))
    write_atomically(path, lambda tmp: program.save(str(tmp), external_data=False))


def quantize_int8(fp32_path: Path, path: Path) -> None:
    """Quantise the ONNX model ``fp32_path`` to int8 weights (per output channel), dynamic activations, into ``path``.

    Per-channel scales: a third of the per-tensor score error on the MiniLM cross-encoder (bench/RESULTS.md).
    The model is pre-processed first (ONNX Runtime's graph optimisation and shape inference), as the quantiser
    advises.

    >>> quantize_int8(Path("/tmp/ce.onnx"), Path("/tmp/ce-int8.onnx"))  # doctest: +SKIP
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        model = onnx.load(str(fp32_path))
        # torch's exporter annotates intermediate shapes that the quantiser's own shape inference contradicts
        # after it has rewritten the graph ("differ in dimension 0: (384) vs (1)"); they are optional: drop them.
        del model.graph.value_info[:]
        bare, prepared = Path(tmp) / "bare.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(model, str(bare))
        # ONNX Runtime's symbolic shape inference gives up on this graph ("Incomplete symbolic shape
        # inference"); ONNX's own shape inference, which pre-processing also runs, is enough for the quantiser
        quant_pre_process(str(bare), str(prepared), skip_symbolic_shape=True)
        write_atomically(path, lambda out: quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8,
                                                            per_channel=True))


def cpu_session(path: Path, threads: int) -> "onnxruntime.InferenceSession":
    """An onnxruntime CPU session on ``path`` with every graph optimisation and ``threads`` intra-op threads.

    Sessions may be run from several threads at once (the API's request threads).

    Args:
        path: an ``.onnx`` file.
        threads: intra-op threads; 0 lets onnxruntime use one per core.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # the graph runs sequentially; no second pool
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class SoloRuns:
    """Runs a graph on one input at a time, ``threads`` single-threaded runs in parallel.

    Dynamic int8 quantisation scales a run's activations by their range over the whole input, padding included,
    so in a shared batch one item's output would depend on the items beside it: a product's score on the other
    candidates, a product's vector on the catalog rows it was embedded with. Run alone and unpadded, each
    output depends on its own input only (bench/RESULTS.md, sessions 14 and 15).

    Args:
        path: an ``.onnx`` file (one session, one intra-op thread, shared by the runs).
        threads: runs at once (0: one per physical core).

    >>> runs = SoloRuns(Path("/tmp/ce-int8.onnx"), threads=0)  # doctest: +SKIP
    >>> runs.map([{"input_ids": ids, "attention_mask": mask}])[0][0].shape  # doctest: +SKIP
    (1, 1)
    """

    def __init__(self, path: Path, threads: int = 0) -> None:
        if threads < 0:
            raise ValueError(f"threads={threads!r} must be >= 0")
        self.session = cpu_session(Path(path), 1)
        self.threads = threads or physical_cores()
        self._pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked worker makes its own
        self._pool_lock = threading.Lock()

    def map(self, feeds: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """The session's outputs for each feed (a batch of one), in the feeds' order."""
        if len(feeds) <= 1 or self.threads == 1:
            return [self.session.run(None, f) for f in feeds]
        return list(self._executor().map(lambda f: self.session.run(None, f), feeds))

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None or self._pool[0] != os.getpid():  # threads do not survive a fork
                self._pool = (os.getpid(), ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-solo"))
            return self._pool[1]
