"""The embedder server's contract: OpenAI's /v1/embeddings shape, limits, problem+json."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.embedder_server import create_embedder_app

PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def server(embedder: MiniLMOnnxEmbedder) -> Iterator[TestClient]:
    app = create_embedder_app(embedder, max_batch_size=4)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.hypot(*a) * math.hypot(*b))


def assert_problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    """``response`` is the test client's response (httpx2's, not httpx's)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert body["type"] == type_
    assert body["title"]
    assert body["instance"] == "/v1/embeddings"
    assert isinstance(body, dict)
    return body


def test_one_string_input(server: TestClient, embedder: MiniLMOnnxEmbedder) -> None:
    response = server.post("/v1/embeddings", json={"input": "a cat sat on the mat"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == embedder.model_id
    assert len(body["data"]) == 1
    item = body["data"][0]
    assert item["object"] == "embedding"
    assert item["index"] == 0
    assert len(item["embedding"]) == embedder.dimension
    (expected,) = embedder.embed(["a cat sat on the mat"])
    assert cosine(item["embedding"], expected) > 0.9999
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}


def test_list_input_keeps_order(server: TestClient, embedder: MiniLMOnnxEmbedder) -> None:
    texts = ["first text", "a second, longer text about databases", "third"]

    response = server.post(
        "/v1/embeddings", json={"input": texts, "model": embedder.model_id, "user": "x"}
    )

    assert response.status_code == 200
    data = response.json()["data"]
    assert [item["index"] for item in data] == [0, 1, 2]
    for item, expected in zip(data, embedder.embed(texts), strict=True):
        assert cosine(item["embedding"], expected) > 0.9999


def test_more_inputs_than_the_max_batch_is_413(server: TestClient) -> None:
    response = server.post("/v1/embeddings", json={"input": ["t"] * 5})

    body = assert_problem(response, 413, "too-many-inputs")
    assert "at most 4" in str(body["detail"])


def test_exactly_the_max_batch_is_accepted(server: TestClient) -> None:
    response = server.post("/v1/embeddings", json={"input": ["t"] * 4})

    assert response.status_code == 200
    assert len(response.json()["data"]) == 4


def test_a_body_over_the_byte_limit_is_413(embedder: MiniLMOnnxEmbedder) -> None:
    app = create_embedder_app(embedder, max_body_bytes=1000)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/embeddings", json={"input": "word " * 50_000})

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"input": []},
        {"input": 42},
        {"input": [1, 2, 3]},
        {"input": ["ok", None]},
        {"input": "x", "encoding_format": "base64"},
        {"input": "x", "dimensions": 1536},
    ],
    ids=["missing", "empty-list", "number", "token-ids", "null-item", "base64", "dimensions"],
)
def test_a_bad_body_is_422_problem(server: TestClient, body: dict[str, object]) -> None:
    response = server.post("/v1/embeddings", json=body)

    assert_problem(response, 422, "invalid-request")


def test_not_json_is_422_problem(server: TestClient) -> None:
    response = server.post(
        "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert_problem(response, 422, "invalid-request")


def test_another_model_is_404_problem(server: TestClient) -> None:
    response = server.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})

    body = assert_problem(response, 404, "model-not-found")
    assert "text-embedding-3-small" in str(body["detail"])


def test_healthz_and_models(server: TestClient, embedder: MiniLMOnnxEmbedder) -> None:
    health = server.get("/healthz")
    models = server.get("/v1/models")

    assert health.json() == {
        "status": "ok",
        "model": embedder.model_id,
        "dimension": embedder.dimension,
    }
    assert models.json()["data"][0]["id"] == embedder.model_id


def test_api_key_is_required_when_set(embedder: MiniLMOnnxEmbedder) -> None:
    app = create_embedder_app(embedder, api_key="sesame")
    with TestClient(app, raise_server_exceptions=False) as client:
        missing = client.post("/v1/embeddings", json={"input": "x"})
        wrong = client.post(
            "/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer nope"}
        )
        right = client.post(
            "/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer sesame"}
        )

    assert_problem(missing, 401, "unauthenticated")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_problem(wrong, 401, "unauthenticated")
    assert right.status_code == 200


def test_a_model_failure_is_500_problem_without_details() -> None:
    class BrokenEmbedder:
        model_id = "broken"
        dimension = 3

        def embed(self, texts: object) -> list[list[float]]:
            raise RuntimeError("secret internal detail")

    with TestClient(create_embedder_app(BrokenEmbedder()), raise_server_exceptions=False) as c:
        response = c.post("/v1/embeddings", json={"input": "x"})

    body = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text
    assert "detail" not in body
