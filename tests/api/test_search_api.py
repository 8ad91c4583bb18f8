"""The /v1/search contract: POST's filters, grouping, explain, fusion and cursors, and its
agreement with GET, through the real app and the real model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from spine.settings import Settings
from support.api import wait_for_job
from support.documents import make_html, make_markdown
from support.problems import assert_problem

QUERY = "pollinators visiting alpine meadow flowers"

# Each paragraph is one chunk at the chunk sizes below, so every document has several.
ALPINE = "\n\n".join(
    [
        "Bumblebees are the hardiest pollinators of alpine meadows: they fly in cold wind "
        "and fog when other insects stay hidden among the rocks.",
        "Alpine flowers bloom in a short summer, so pollinators visiting them must work fast "
        "before the first snow closes the meadow again.",
        "The hut warden keeps a logbook of weather, snow depth and the number of hikers who "
        "cross the pass each day of the season.",
        "Goats graze the lower slopes in June and the shepherds move them higher as the snow "
        "line retreats up the mountain.",
    ]
)
MEADOW = "\n\n".join(
    [
        "Hoverflies and solitary bees are common pollinators in lowland meadows, visiting "
        "clover, knapweed and wild carrot all summer long.",
        "Mowing a meadow only once a year, late in the summer, leaves flowers for pollinators "
        "and seeds for the next spring.",
        "The parish council meets on the first Tuesday of each month in the village hall to "
        "discuss roads, lighting and drains.",
    ]
)
HARBOR = "\n\n".join(
    [
        "Container ships unload at the harbour cranes day and night, and trucks queue at the "
        "gate to carry the boxes inland.",
        "Gulls nest on the warehouse roofs, and the harbour master logs every vessel that "
        "enters or leaves the port.",
    ]
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small chunks, so that a few paragraphs make a document of several chunks."""
    return settings.model_copy(
        update={"chunk_target_tokens": 30, "chunk_max_tokens": 40, "chunk_overlap_tokens": 0}
    )


@dataclass(frozen=True)
class Document:
    id: str
    created_at: datetime
    chunk_count: int


@dataclass(frozen=True)
class Corpus:
    alpine: Document
    meadow: Document
    harbor: Document

    def ids(self, *names: str) -> set[str]:
        return {getattr(self, name).id for name in names}


def upload(
    client: TestClient,
    headers: dict[str, str],
    name: str,
    data: bytes,
    content_type: str,
    metadata: dict[str, Any],
) -> Document:
    response = client.post(
        "/v1/documents",
        headers=headers,
        files={"file": (name, data, content_type)},
        data={"metadata": json.dumps(metadata)},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    job = wait_for_job(client, body["job"]["id"], headers)
    assert job["state"] == "SUCCEEDED", job
    document = client.get(f"/v1/documents/{body['document']['id']}", headers=headers).json()
    return Document(
        document["id"], datetime.fromisoformat(document["created_at"]), document["chunk_count"]
    )


@pytest.fixture
def corpus(client: TestClient, auth: AuthFactory) -> Corpus:
    """Three documents of tenant "acme" of different types and metadata, uploaded in order."""
    headers = auth("acme")
    corpus = Corpus(
        alpine=upload(
            client,
            headers,
            "alpine.txt",
            ALPINE.encode(),
            "text/plain",
            {"team": "blue", "year": 2023, "public": True},
        ),
        meadow=upload(
            client,
            headers,
            "meadow.md",
            make_markdown(MEADOW),
            "text/markdown",
            {"team": "red", "year": 2024, "public": False},
        ),
        harbor=upload(
            client,
            headers,
            "harbor.html",
            make_html(HARBOR),
            "text/html",
            {"team": "green", "year": 2024},
        ),
    )
    assert corpus.alpine.chunk_count >= 3, corpus
    assert corpus.alpine.created_at < corpus.meadow.created_at < corpus.harbor.created_at
    return corpus


def post_search(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/v1/search", headers=headers, json={"q": QUERY, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def chunk_ids(body: dict[str, Any]) -> list[str]:
    return [hit["chunk_id"] for hit in body["results"]]


def document_ids(body: dict[str, Any]) -> set[str]:
    return {hit["document_id"] for hit in body["results"]}


def without_timing(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "took_ms"}


def fusion_json(method: str, rrf_k: int, keyword_weight: float) -> dict[str, Any]:
    """The response's fusion object for these parts."""
    return {
        "method": method,
        "rrf_k": rrf_k,
        "keyword_weight": pytest.approx(keyword_weight),
        "vector_weight": pytest.approx(1 - keyword_weight),
    }


def configured_fusion(settings: Settings) -> dict[str, Any]:
    fusion = settings.fusion()
    return fusion_json(fusion.method.value, fusion.rrf_k, fusion.keyword_weight)


# -- POST and GET -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic"])
def test_post_answers_what_get_answers_for_a_simple_query(
    client: TestClient, auth: AuthFactory, corpus: Corpus, mode: str
) -> None:
    headers = auth("acme", Role.READER)
    got = client.get("/v1/search", headers=headers, params={"q": QUERY, "k": 5, "mode": mode})
    posted = client.post("/v1/search", headers=headers, json={"q": QUERY, "k": 5, "mode": mode})
    assert got.status_code == posted.status_code == 200, (got.text, posted.text)
    assert got.json()["results"], got.json()
    assert without_timing(posted.json()) == without_timing(got.json())


def test_get_keeps_its_shape_and_adds_paging_fields(
    client: TestClient, auth: AuthFactory, corpus: Corpus, settings: Settings
) -> None:
    body = client.get("/v1/search", headers=auth("acme"), params={"q": QUERY, "k": 2}).json()
    assert {"query", "mode", "took_ms", "degraded", "results"} <= body.keys()
    assert body["offset"] == 0
    assert isinstance(body["next_cursor"], str)
    assert body["fusion"] == configured_fusion(settings)
    for hit in body["results"]:
        assert {"document_id", "chunk_id", "title", "score", "snippet"} <= hit.keys()
        assert hit["explain"] is None


def test_post_needs_a_reader_token(client: TestClient) -> None:
    response = client.post("/v1/search", json={"q": QUERY})
    assert_problem(response, 401, "unauthenticated")


# -- Explain ------------------------------------------------------------------------------


def test_explain_gives_each_legs_rank_as_that_leg_alone_ranks_it(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")
    rrf = {"method": "rrf", "rrf_k": 60, "keyword_weight": 0.5}
    hybrid = post_search(client, headers, k=100, explain=True, fusion=rrf)
    keyword = post_search(client, headers, k=100, mode="keyword")
    semantic = post_search(client, headers, k=100, mode="semantic")
    assert hybrid["fusion"] == fusion_json("rrf", 60, 0.5)
    assert keyword["results"], "the keyword leg should find the query's words"
    assert set(chunk_ids(hybrid)) == set(chunk_ids(keyword)) | set(chunk_ids(semantic))
    for hit in hybrid["results"]:
        explain = hit["explain"]
        for leg, alone in (("keyword", keyword), ("vector", semantic)):
            ranked = chunk_ids(alone)
            if hit["chunk_id"] not in ranked:
                assert explain[leg] is None, hit
                continue
            position = ranked.index(hit["chunk_id"])
            assert explain[leg]["rank"] == position + 1, (leg, hit)
            assert explain[leg]["score"] == pytest.approx(alone["results"][position]["score"])
            assert explain[leg]["weight"] == 0.5
            assert explain[leg]["contribution"] == pytest.approx(0.5 / (60 + position + 1))
        contributions = [leg["contribution"] for leg in explain.values() if leg is not None]
        assert hit["score"] == pytest.approx(sum(contributions))


def test_explain_of_weighted_fusion_adds_normalised_scores(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    weighted = {"method": "weighted", "keyword_weight": 0.3}
    body = post_search(client, auth("acme"), k=100, explain=True, fusion=weighted)
    for leg, weight in (("keyword", 0.3), ("vector", 0.7)):
        ranks = [hit["explain"][leg] for hit in body["results"] if hit["explain"][leg]]
        assert ranks, leg
        assert all(rank["weight"] == pytest.approx(weight) for rank in ranks)
        assert all(0 <= rank["contribution"] <= weight + 1e-9 for rank in ranks)
        best = min(ranks, key=lambda rank: rank["rank"])
        assert best["rank"] == 1
        assert best["contribution"] == pytest.approx(weight)
    for hit in body["results"]:
        contributions = [leg["contribution"] for leg in hit["explain"].values() if leg]
        assert hit["score"] == pytest.approx(sum(contributions))


@pytest.mark.parametrize(
    ("mode", "leg", "other"), [("keyword", "keyword", "vector"), ("semantic", "vector", "keyword")]
)
def test_explain_of_a_single_leg_mode_names_only_that_leg(
    client: TestClient, auth: AuthFactory, corpus: Corpus, mode: str, leg: str, other: str
) -> None:
    body = post_search(client, auth("acme"), k=100, mode=mode, explain=True)
    assert body["fusion"] is None
    assert body["results"]
    for position, hit in enumerate(body["results"], start=1):
        assert hit["explain"][other] is None
        assert hit["explain"][leg]["rank"] == position
        assert hit["explain"][leg]["weight"] == 1.0
        assert hit["explain"][leg]["score"] == pytest.approx(hit["score"])


def test_without_explain_every_result_has_explain_null(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    body = post_search(client, auth("acme"), k=100)
    assert body["results"]
    assert all(hit["explain"] is None for hit in body["results"])


# -- Grouping -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic"])
def test_group_by_document_gives_each_document_once_by_its_best_chunk(
    client: TestClient, auth: AuthFactory, corpus: Corpus, mode: str
) -> None:
    headers = auth("acme")
    chunks = post_search(client, headers, k=100, mode=mode)["results"]
    grouped = post_search(client, headers, k=100, mode=mode, group_by="document")["results"]
    assert len(chunks) > len(document_ids({"results": chunks})), "some document has 2+ hits"
    best: dict[str, dict[str, Any]] = {}
    for hit in chunks:
        best.setdefault(hit["document_id"], hit)
    assert [hit["document_id"] for hit in grouped] == list(best)
    assert [hit["chunk_id"] for hit in grouped] == [hit["chunk_id"] for hit in best.values()]
    assert [hit["score"] for hit in grouped] == pytest.approx(
        [hit["score"] for hit in best.values()]
    )


# -- Paging -------------------------------------------------------------------------------


def walk(client: TestClient, headers: dict[str, str], **body: Any) -> list[dict[str, Any]]:
    """Every page of a search, following next_cursor until it is null."""
    pages = [post_search(client, headers, **body)]
    while pages[-1]["next_cursor"] is not None:
        assert len(pages) < 50, "the cursor never ends"
        pages.append(post_search(client, headers, **body, cursor=pages[-1]["next_cursor"]))
    return pages


@pytest.mark.parametrize("group_by", ["chunk", "document"])
@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic"])
def test_cursor_pages_walk_one_ranking_without_duplicates(
    client: TestClient, auth: AuthFactory, corpus: Corpus, mode: str, group_by: str
) -> None:
    headers = auth("acme")
    # Documents are few (keyword mode finds two): pages of one walk several of them.
    size = 2 if group_by == "chunk" else 1
    pages = walk(client, headers, k=size, mode=mode, group_by=group_by)
    walked = [hit["chunk_id"] for page in pages for hit in page["results"]]
    assert len(walked) == len(set(walked))
    assert [page["offset"] for page in pages] == [size * n for n in range(len(pages))]
    assert all(len(page["results"]) == size for page in pages[:-1])
    assert pages[-1]["next_cursor"] is None
    first_ten = post_search(client, headers, k=10, mode=mode, group_by=group_by)
    everything = post_search(client, headers, k=100, mode=mode, group_by=group_by)
    assert walked[:10] == chunk_ids(first_ten)
    assert walked == chunk_ids(everything)
    assert len(pages) > 1


def test_offset_pages_match_cursor_pages(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")
    pages = walk(client, headers, k=2)
    by_offset = [post_search(client, headers, k=2, offset=page["offset"]) for page in pages]
    assert [chunk_ids(page) for page in by_offset] == [chunk_ids(page) for page in pages]


def test_get_follows_a_cursor_too(client: TestClient, auth: AuthFactory, corpus: Corpus) -> None:
    headers = auth("acme")
    params: dict[str, Any] = {"q": QUERY, "k": 2, "mode": "keyword"}
    first = client.get("/v1/search", headers=headers, params=params).json()
    second = client.get(
        "/v1/search", headers=headers, params={**params, "cursor": first["next_cursor"]}
    ).json()
    everything = client.get("/v1/search", headers=headers, params={**params, "k": 4}).json()
    assert second["offset"] == 2
    assert chunk_ids(first) + chunk_ids(second) == chunk_ids(everything)


@pytest.mark.parametrize(
    "change",
    [
        {"q": "goats grazing on the mountain"},
        {"mode": "keyword"},
        {"k": 3},
        {"group_by": "document"},
        {"candidates": 50},
        {"fusion": {"keyword_weight": 0.9}},
    ],
)
def test_a_cursor_used_with_another_search_is_refused(
    client: TestClient, auth: AuthFactory, corpus: Corpus, change: dict[str, Any]
) -> None:
    headers = auth("acme")
    cursor = post_search(client, headers, k=2)["next_cursor"]
    assert cursor is not None
    response = client.post(
        "/v1/search", headers=headers, json={"q": QUERY, "k": 2, "cursor": cursor, **change}
    )
    body = assert_problem(response, 422, "invalid-request")
    assert "cursor" in body["detail"]


def test_a_cursor_with_another_filter_is_refused(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")
    cursor = post_search(client, headers, k=2)["next_cursor"]
    response = client.post(
        "/v1/search",
        headers=headers,
        json={"q": QUERY, "k": 2, "cursor": cursor, "filters": {"metadata": {"team": "blue"}}},
    )
    assert_problem(response, 422, "invalid-request")


def test_a_cursor_may_change_explain(client: TestClient, auth: AuthFactory, corpus: Corpus) -> None:
    headers = auth("acme")
    first = post_search(client, headers, k=2)
    second = post_search(client, headers, k=2, explain=True, cursor=first["next_cursor"])
    assert second["offset"] == 2
    assert all(hit["explain"] is not None for hit in second["results"])


def test_offset_and_cursor_together_are_refused(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")
    cursor = post_search(client, headers, k=2)["next_cursor"]
    response = client.post(
        "/v1/search", headers=headers, json={"q": QUERY, "k": 2, "offset": 2, "cursor": cursor}
    )
    body = assert_problem(response, 422, "invalid-request")
    assert "offset" in body["detail"]
    response = client.get(
        "/v1/search", headers=headers, params={"q": QUERY, "k": 2, "offset": 2, "cursor": cursor}
    )
    assert_problem(response, 422, "invalid-request")


@pytest.mark.parametrize("cursor", ["not-a-cursor", "W10", "WzEwLCJ4Il0", "eyJhIjoxfQ"])
def test_a_cursor_spine_did_not_make_is_refused(
    client: TestClient, auth: AuthFactory, cursor: str
) -> None:
    response = client.post("/v1/search", headers=auth("acme"), json={"q": QUERY, "cursor": cursor})
    assert_problem(response, 422, "invalid-request")


def test_pages_end_at_the_candidates_ranked(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")
    pages = walk(client, headers, k=2, candidates=3)
    walked = [hit["chunk_id"] for page in pages for hit in page["results"]]
    assert walked == chunk_ids(post_search(client, headers, k=100))[:3]
    assert [len(page["results"]) for page in pages] == [2, 1]


def test_an_offset_past_the_candidates_is_refused(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")
    response = client.post(
        "/v1/search", headers=headers, json={"q": QUERY, "offset": 5, "candidates": 5}
    )
    body = assert_problem(response, 422, "invalid-request")
    assert "candidates" in body["detail"]
    deeper = post_search(client, headers, offset=5, candidates=10)
    assert deeper["offset"] == 5


# -- Filters ------------------------------------------------------------------------------


FILTER_CASES: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"metadata": {"team": "blue"}}, ("alpine",)),
    ({"metadata": {"team": {"in": ["blue", "red"]}}}, ("alpine", "meadow")),
    ({"metadata": {"year": 2024}}, ("meadow", "harbor")),
    ({"metadata": {"year": {"in": [2023, 2025]}}}, ("alpine",)),
    ({"metadata": {"public": True}}, ("alpine",)),
    ({"metadata": {"public": False}}, ("meadow",)),
    ({"metadata": {"year": 2024, "team": "green"}}, ("harbor",)),
    ({"metadata": {"team": "purple"}}, ()),
    ({"metadata": {"colour": "blue"}}, ()),
    ({"content_types": ["text/markdown"]}, ("meadow",)),
    ({"content_types": ["text/plain", "text/html"]}, ("alpine", "harbor")),
    ({"content_types": ["application/pdf"]}, ()),
    ({"metadata": {"year": 2024}, "content_types": ["text/html"]}, ("harbor",)),
]


@pytest.mark.parametrize("mode", ["hybrid", "semantic"])
def test_filters_restrict_results_to_matching_documents(
    client: TestClient, auth: AuthFactory, corpus: Corpus, mode: str
) -> None:
    # Every case on one corpus (a corpus a case cost ~0.8 s of uploads and processing);
    # each wrong case is reported, not only the first.
    names = {getattr(corpus, name).id: name for name in ("alpine", "meadow", "harbor")}
    wrong = []
    for filters, expected in FILTER_CASES:
        body = post_search(client, auth("acme"), k=100, mode=mode, filters=filters)
        if document_ids(body) != corpus.ids(*expected):
            found = sorted(names.get(id_, id_) for id_ in document_ids(body))
            wrong.append(f"{filters}: found {found}, expected {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


def test_document_ids_filter_keeps_only_those_documents(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")
    wanted = [corpus.alpine.id, corpus.harbor.id]
    for mode in ("hybrid", "keyword", "semantic"):
        body = post_search(client, headers, k=100, mode=mode, filters={"document_ids": wanted})
        assert body["results"], mode
        assert document_ids(body) <= set(wanted), mode
    semantic = post_search(
        client, headers, k=100, mode="semantic", filters={"document_ids": wanted}
    )
    assert document_ids(semantic) == set(wanted)
    assert len(semantic["results"]) == corpus.alpine.chunk_count + corpus.harbor.chunk_count


def test_a_selective_filter_applies_inside_the_search_not_after_it(
    client: TestClient, auth: AuthFactory, corpus: Corpus, settings: Settings
) -> None:
    """With more close chunks elsewhere than a leg's pool holds, a filter applied to the
    pool afterwards would leave the filtered document few hits or none."""
    headers = auth("acme")
    paragraphs = [
        f"Field note {n}: pollinators visiting alpine meadow flowers, bumblebee count {n}."
        for n in range(settings.search_vector_candidates + 20)
    ]
    upload(client, headers, "notes.txt", "\n\n".join(paragraphs).encode(), "text/plain", {})
    for mode in ("semantic", "hybrid"):
        body = post_search(
            client, headers, k=100, mode=mode, filters={"document_ids": [corpus.harbor.id]}
        )
        assert document_ids(body) == {corpus.harbor.id}, mode
        assert len(body["results"]) == corpus.harbor.chunk_count, mode


def test_created_at_range_is_inclusive_below_and_exclusive_above(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")

    def found(created_at: dict[str, str]) -> set[str]:
        body = post_search(client, headers, k=100, filters={"created_at": created_at})
        return document_ids(body)

    meadow = corpus.meadow.created_at.isoformat()
    assert found({"gte": meadow}) == corpus.ids("meadow", "harbor")
    assert found({"lt": meadow}) == corpus.ids("alpine")
    assert found({"gte": meadow, "lt": corpus.harbor.created_at.isoformat()}) == corpus.ids(
        "meadow"
    )
    assert found({"gte": corpus.alpine.created_at.isoformat()}) == corpus.ids(
        "alpine", "meadow", "harbor"
    )


def test_created_at_in_another_offset_means_the_same_instant(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    meadow = corpus.meadow.created_at.astimezone(timezone(timedelta(hours=-5)))
    body = post_search(
        client, auth("acme"), k=100, filters={"created_at": {"gte": meadow.isoformat()}}
    )
    assert document_ids(body) == corpus.ids("meadow", "harbor")


def test_another_tenants_document_ids_never_return_its_hits(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    rival = upload(
        client,
        auth("rival"),
        "rival.txt",
        ALPINE.encode(),
        "text/plain",
        {"team": "blue"},
    )
    headers = auth("acme")
    for mode in ("hybrid", "keyword", "semantic"):
        only_rival = post_search(
            client, headers, k=100, mode=mode, filters={"document_ids": [rival.id]}
        )
        assert only_rival["results"] == [], mode
        mixed = post_search(
            client,
            headers,
            k=100,
            mode=mode,
            filters={"document_ids": [rival.id, corpus.alpine.id]},
        )
        assert document_ids(mixed) == {corpus.alpine.id}, mode
        by_metadata = post_search(
            client, headers, k=100, mode=mode, filters={"metadata": {"team": "blue"}}
        )
        assert document_ids(by_metadata) == {corpus.alpine.id}, mode
    # ...and the rival's own search finds its document, so the filter was not just empty.
    own = post_search(client, auth("rival"), k=100, filters={"document_ids": [rival.id]})
    assert document_ids(own) == {rival.id}


# -- Fusion -------------------------------------------------------------------------------


def test_a_fusion_override_changes_the_fusion_used(
    client: TestClient, auth: AuthFactory, corpus: Corpus, settings: Settings
) -> None:
    headers = auth("acme")
    configured = settings.fusion()
    other = "rrf" if configured.method.value == "weighted" else "weighted"
    default = post_search(client, headers, k=100)
    overridden = post_search(
        client, headers, k=100, fusion={"method": other, "keyword_weight": 0.8}
    )
    assert default["fusion"] == configured_fusion(settings)
    assert overridden["fusion"] == fusion_json(other, configured.rrf_k, 0.8)
    assert [h["score"] for h in overridden["results"]] != [h["score"] for h in default["results"]]
    rrf_k = post_search(client, headers, k=5, fusion={"rrf_k": 7})
    assert rrf_k["fusion"] == fusion_json(configured.method.value, 7, configured.keyword_weight)


def test_a_fusion_override_is_ignored_outside_hybrid_mode(
    client: TestClient, auth: AuthFactory, corpus: Corpus
) -> None:
    headers = auth("acme")
    plain = post_search(client, headers, k=100, mode="keyword")
    overridden = post_search(client, headers, k=100, mode="keyword", fusion={"method": "weighted"})
    assert overridden["fusion"] is None
    assert chunk_ids(overridden) == chunk_ids(plain)


# -- Invalid requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"q": QUERY, "limit": 5},
        {"q": QUERY, "filters": {"tags": ["a"]}},
        {"q": QUERY, "filters": {"metadata": {"team": {"in": ["blue"], "not": ["red"]}}}},
        {"q": QUERY, "filters": {"created_at": {"gt": "2024-01-01T00:00:00Z"}}},
        {"q": QUERY, "fusion": {"method": "rrf", "k": 3}},
    ],
    ids=["top-level", "filters", "metadata-operator", "created-at", "fusion"],
)
def test_an_unknown_field_is_refused(
    client: TestClient, auth: AuthFactory, body: dict[str, Any]
) -> None:
    response = client.post("/v1/search", headers=auth("acme"), json=body)
    assert_problem(response, 422, "invalid-request")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"q": ""},
        {"q": "x" * 1001},
        {"q": QUERY, "k": 0},
        {"q": QUERY, "k": 101},
        {"q": QUERY, "offset": -1},
        {"q": QUERY, "candidates": 0},
        {"q": QUERY, "candidates": 1001},
        {"q": QUERY, "mode": "fuzzy"},
        {"q": QUERY, "group_by": "tenant"},
        {"q": QUERY, "explain": "maybe"},
        {"q": QUERY, "filters": {"document_ids": []}},
        {"q": QUERY, "filters": {"document_ids": ["doc"] * 1001}},
        {"q": QUERY, "filters": {"metadata": {f"key{i}": 1 for i in range(21)}}},
        {"q": QUERY, "filters": {"metadata": {"team": {"in": []}}}},
        {"q": QUERY, "filters": {"metadata": {"team": {"in": list(range(101))}}}},
        {"q": QUERY, "filters": {"metadata": {"team": ["blue", "red"]}}},
        {"q": QUERY, "filters": {"metadata": {"team": {"name": "blue"}}}},
        {"q": QUERY, "filters": {"metadata": {"team": None}}},
        {"q": QUERY, "filters": {"metadata": {"n": 2**64}}},
        {"q": QUERY, "filters": {"content_types": []}},
        {"q": QUERY, "filters": {"created_at": {"gte": "yesterday"}}},
        {"q": QUERY, "filters": {"created_at": {"gte": "2024-01-01T00:00:00"}}},
        {"q": QUERY, "filters": {"created_at": {"lt": "0001-01-01T00:00:00+01:00"}}},
        {
            "q": QUERY,
            "filters": {
                "created_at": {"gte": "2024-02-01T00:00:00Z", "lt": "2024-01-01T00:00:00Z"}
            },
        },
        {"q": QUERY, "fusion": {"method": "borda"}},
        {"q": QUERY, "fusion": {"rrf_k": 0}},
        {"q": QUERY, "fusion": {"keyword_weight": 1.5}},
        {"q": "   "},
    ],
)
def test_invalid_bodies_answer_422_problems(
    client: TestClient, auth: AuthFactory, body: dict[str, Any]
) -> None:
    response = client.post("/v1/search", headers=auth("acme"), json=body)
    assert_problem(response, 422, "invalid-request")


def test_a_naive_created_at_is_refused_with_a_reason(client: TestClient, auth: AuthFactory) -> None:
    response = client.post(
        "/v1/search",
        headers=auth("acme"),
        json={"q": QUERY, "filters": {"created_at": {"gte": "2024-01-01T00:00:00"}}},
    )
    body = assert_problem(response, 422, "invalid-request")
    assert "time zone" in body["detail"]
    assert body["errors"][0]["loc"][:4] == ["body", "filters", "created_at", "gte"]


def test_a_body_that_is_not_json_is_refused(client: TestClient, auth: AuthFactory) -> None:
    response = client.post(
        "/v1/search",
        headers={**auth("acme"), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "filters",
    [
        {"document_ids": ["doc\x00"]},
        {"content_types": ["text/\x00"]},
        {"metadata": {"te\x00am": "blue"}},
        {"metadata": {"team": "bl\x00ue"}},
        {"metadata": {"team": {"in": ["bl\x00ue"]}}},
    ],
)
def test_a_nul_in_a_filter_is_refused_not_sent_to_the_database(
    client: TestClient, auth: AuthFactory, filters: dict[str, Any]
) -> None:
    """PostgreSQL cannot hold NUL in text or jsonb: no stored value has one."""
    response = client.post(
        "/v1/search", headers=auth("acme"), json={"q": QUERY, "filters": filters}
    )
    assert_problem(response, 422, "invalid-request")
