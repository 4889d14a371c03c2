"""`quantize: int8` for sentence-transformers encoders on CPU, through ONNX Runtime.

The whole model (transformer, pooling, normalisation) is exported to ONNX once per process, its
MatMul weights quantized to int8 per output channel (ONNX Runtime's dynamic quantization), and
texts are run one at a time. Measured on the bundled MiniLM, 400 stdlib functions, AVX2, against
sentence-transformers fp32: cosine 0.992 mean / 0.974 min, the same MRR@10 (0.758 vs 0.757) and
recall@10, 0.92 of the top-10 neighbours shared. torch's own dynamic int8 (fbgemm) on the same
texts gave cosine 0.85 min and 0.77 of the neighbours: on CPUs without VNNI it quantizes
activations to 7 bits, where ONNX Runtime's AVX2 kernels keep 8.

One text per run: dynamic quantization scales a MatMul's input by the range of the whole input
tensor, so a text batched with others would get a vector that depends on them (and a warm cache,
which changes what is batched together, would change the mined negatives).

One thread per run, as many runs at once as there are threads (`side_by_side`): one text's MatMuls
are too small to share between cores.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tripleforge.errors import UserError
from tripleforge.side_by_side import run_side_by_side


def _exportable(model: Any, names: list[str]) -> Any:
    """`model` (a SentenceTransformer) as positional tensors in, sentence embedding out."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

    return Wrapped().eval()


@contextlib.contextmanager
def _root_logger_warnings_muted() -> Iterator[None]:
    """Records of level WARNING and below dropped for the block (`logging.disable`), then the level
    that was set before."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)


def int8_session(model: Any, features: dict[str, Any], key: str) -> tuple[Any, list[str]]:
    """(ONNX Runtime session of `model` with int8 weights, one thread per run; the names of its
    inputs in order).
    `features`: the model's own preprocessing of a sample text, naming its 2-D integer inputs.
    A model that does not export is a UserError naming params key `key`."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = sorted(k for k, v in features.items() if isinstance(v, torch.Tensor) and v.dim() == 2)
    sample = tuple(features[k] for k in names)
    with tempfile.TemporaryDirectory(prefix="tripleforge-onnx-") as tmp:
        fp32, int8 = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        try:
            # the tracer warns of every Python branch it fixes (shapes, masks); for these inputs each
            # branch goes the one way any text takes, and the warnings would bury the stage's output
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(_exportable(model, names), sample, str(fp32), input_names=names,
                                  output_names=["embedding"], opset_version=17, dynamo=False,
                                  dynamic_axes={**{n: {0: "rows", 1: "tokens"} for n in names}, "embedding": {0: "rows"}})
                with _root_logger_warnings_muted():  # ONNX Runtime logs advice on a model's pre-processing
                    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
        except Exception as exc:  # noqa: BLE001 - torch's exporter raises many kinds; all mean "not this model"
            why = " ".join(str(exc).split())[:300]
            raise UserError(f"{key}: int8 needs the model exported to ONNX, which failed "
                            f"({type(exc).__name__}: {why}); use quantize: none") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    return session, names


def run_one(session: Any, names: list[str], features: dict[str, Any], row: int, width: int,
            left: bool) -> np.ndarray:
    """The embedding of row `row` of `features` (padded tensors, on the left when `left`), run on
    its `width` real tokens only: padding would widen the range the activations are scaled by."""
    cols = slice(features[names[0]].shape[1] - width, None) if left else slice(0, width)
    inputs = {n: features[n][row:row + 1, cols].numpy().astype(np.int64) for n in names}
    return session.run(None, inputs)[0][0]


def run_all(session: Any, names: list[str], features: dict[str, Any], widths: list[int], left: bool,
            threads: int) -> np.ndarray:
    """The embeddings of every row of `features` (row i has `widths[i]` real tokens), `threads`
    runs at once, longest texts first so that no thread is left with a long one at the end."""
    order = sorted(range(len(widths)), key=lambda i: (-widths[i], i))
    out: list[np.ndarray | None] = [None] * len(widths)

    def one(i: int) -> None:
        out[i] = run_one(session, names, features, i, widths[i], left)

    run_side_by_side(one, order, threads)
    return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)
