"""``spine embedder serve``: an ``Embedder`` behind an OpenAI-compatible ``POST /v1/embeddings``.

The request is ``{"input": "text" | ["text", ...], "model": optional}``; the answer is
OpenAI's ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding":
[...]}], "model": ..., "usage": {...}}``. ``usage`` counts words and punctuation marks, the
pipeline's approximation of wordpieces, since the ``Embedder`` port has no tokenizer.

Limits answer 413 problem+json (more than ``max_batch_size`` inputs, or a body over
``max_body_bytes``), which is what makes an ``HttpEmbedder`` split its batch. Every error is
``application/problem+json``, rendered by the API's own handlers.

The model runs in the thread pool (the route is a plain ``def``), never on the event loop;
at most ``max_concurrency`` batches run in the model at once, the others wait their turn.
"""

from __future__ import annotations

import secrets
import threading
from typing import Annotated, Final, Literal

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, ConfigDict, Field

from spine import __version__
from spine.api import problems
from spine.api.limits import BodySizeLimit
from spine.errors import InvalidRequest, SpineError, Unauthenticated
from spine.pipeline.chunk import approximate_token_count
from spine.ports import Embedder

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "create_embedder_app", "serve_embedder"]

DEFAULT_MAX_BATCH_SIZE: Final = 256
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
DEFAULT_PORT: Final = 8001


class TooManyInputs(SpineError):
    status = 413
    type = "too-many-inputs"
    title = "Too many inputs in one request"


class ModelNotFound(SpineError):
    status = 404
    type = "model-not-found"
    title = "This server does not serve that model"


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="One text, or a non-empty list of texts."
    )
    model: str | None = Field(None, description="Must be the served model's id when given.")
    encoding_format: Literal["float"] = Field("float", description="Only float is supported.")
    dimensions: int | None = Field(None, description="Must be the model's dimension if given.")


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


def create_embedder_app(
    embedder: Embedder,
    *,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_concurrency: int = 2,
    api_key: str | None = None,
) -> FastAPI:
    """The app around an already loaded ``embedder``; ``api_key`` makes Bearer required."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    model_slots = threading.BoundedSemaphore(max_concurrency)

    def authorize(authorization: Annotated[str | None, Header()] = None) -> None:
        if api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), api_key.encode()
        ):
            raise Unauthenticated("a valid 'Authorization: Bearer <key>' header is required")

    app = FastAPI(
        title="Spine embedder",
        version=__version__,
        description=f"OpenAI-compatible embeddings of {embedder.model_id}.",
    )
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str | int]:
        return {"status": "ok", "model": embedder.model_id, "dimension": embedder.dimension}

    @app.get("/v1/models", tags=["embeddings"], dependencies=[Depends(authorize)])
    def models() -> dict[str, object]:
        return {
            "object": "list",
            "data": [{"id": embedder.model_id, "object": "model", "owned_by": "spine"}],
        }

    @app.post(
        "/v1/embeddings",
        tags=["embeddings"],
        dependencies=[Depends(authorize)],
        response_model=EmbeddingResponse,
    )
    def embeddings(request: EmbeddingRequest) -> EmbeddingResponse:
        texts = [request.input] if isinstance(request.input, str) else request.input
        if request.model is not None and request.model != embedder.model_id:
            raise ModelNotFound(
                f"model {request.model!r} is not served here; this server serves "
                f"{embedder.model_id!r}"
            )
        if request.dimensions is not None and request.dimensions != embedder.dimension:
            raise InvalidRequest(
                f"{embedder.model_id} makes {embedder.dimension} dimensions, "
                f"not {request.dimensions}"
            )
        if len(texts) > max_batch_size:
            raise TooManyInputs(
                f"{len(texts)} inputs in one request; this server takes at most "
                f"{max_batch_size}: split the batch"
            )
        with model_slots:
            vectors = embedder.embed(texts)
        tokens = sum(approximate_token_count(text) for text in texts)
        return EmbeddingResponse(
            data=[EmbeddingItem(index=i, embedding=vector) for i, vector in enumerate(vectors)],
            model=embedder.model_id,
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    return app


def serve_embedder(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    batch_size: int = 16,
    *,
    threads: int = 0,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_concurrency: int = 2,
    api_key: str | None = None,
    log_level: str = "info",
) -> None:
    """Load the local MiniLM model and serve it until interrupted.

    ``batch_size`` is the model's batch (memory: ~0.6 GB at 16); ``max_batch_size`` is the
    most inputs one request may carry.
    """
    import uvicorn

    from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder

    embedder = MiniLMOnnxEmbedder(batch_size=batch_size, threads=threads)
    app = create_embedder_app(
        embedder,
        max_batch_size=max_batch_size,
        max_concurrency=max_concurrency,
        api_key=api_key,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
