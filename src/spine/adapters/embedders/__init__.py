"""Text embedding adapters (the ``Embedder`` port)."""

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder

__all__ = ["MiniLMOnnxEmbedder"]
