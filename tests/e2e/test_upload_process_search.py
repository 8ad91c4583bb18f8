"""Upload -> process -> search, end to end, through HTTP with the real model."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from support.api import wait_for_job
from support.documents import make_docx, make_html, make_markdown, make_pdf

FILLER = (
    "Spine keeps documents of many kinds and finds them again when people ask.\n\n"
    "This paragraph is here so that every document has some ordinary text around the "
    "phrase that identifies it, as real documents do."
)

CASES = {
    "pdf": ("report.pdf", "application/pdf", make_pdf, "quarterly heliotrope turbine audit"),
    "docx": (
        "memo.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        make_docx,
        "marzipan lighthouse procurement schedule",
    ),
    "html": ("page.html", "text/html", make_html, "tangerine observatory visiting hours"),
    "md": ("notes.md", "text/markdown", make_markdown, "walrus choir rehearsal minutes"),
    "txt": (
        "plain.txt",
        "text/plain",
        lambda text: text.encode(),
        "cobalt bicycle repair manifesto",
    ),
}


@pytest.fixture
def corpus(client: TestClient, auth: AuthFactory) -> dict[str, str]:
    """Uploads one document of each type for tenant "acme"; returns kind -> document id."""
    headers = auth("acme")
    ids: dict[str, str] = {}
    jobs: dict[str, str] = {}
    for kind, (name, content_type, make, phrase) in CASES.items():
        data = make(f"{FILLER}\n\nThe {phrase} is in this {kind} file.")
        response = client.post(
            "/v1/documents", headers=headers, files={"file": (name, data, content_type)}
        )
        assert response.status_code == 202, response.text
        ids[kind] = response.json()["document"]["id"]
        jobs[kind] = response.json()["job"]["id"]
    for kind, job_id in jobs.items():
        job = wait_for_job(client, job_id, headers)
        assert job["state"] == "SUCCEEDED", (kind, job)
    return ids


def first_hit_problems(
    client: TestClient, headers: dict[str, str], corpus: dict[str, str], kind: str, mode: str
) -> list[str]:
    """What is wrong with the first hit for ``kind``'s phrase in ``mode``: nothing, or why."""
    phrase = CASES[kind][3]
    body = client.get(
        "/v1/search", headers=headers, params={"q": phrase, "mode": mode, "k": 5}
    ).json()
    if (body.get("mode"), body.get("query")) != (mode, phrase) or not body.get("results"):
        return [f"{kind}/{mode}: {body}"]
    first = body["results"][0]
    problems = []
    if first["document_id"] != corpus[kind]:
        problems.append(f"{kind}/{mode}: first hit {first['document_id']}, not {corpus[kind]}")
    if not {"chunk_id", "title", "score", "snippet"} <= first.keys():
        problems.append(f"{kind}/{mode}: fields {sorted(first)}")
    if mode != "semantic" and "<mark>" not in first["snippet"]:
        problems.append(f"{kind}/{mode}: no <mark> in {first['snippet']!r}")
    return problems


def test_each_format_is_first_hit_for_its_phrase(
    client: TestClient, auth: AuthFactory, corpus: dict[str, str]
) -> None:
    # Every format and mode on one corpus (one a case cost ~1 s of uploads and extraction);
    # every wrong case is reported, not only the first.
    headers = auth("acme")
    problems = [
        problem
        for kind in CASES
        for mode in ("hybrid", "keyword", "semantic")
        for problem in first_hit_problems(client, headers, corpus, kind, mode)
    ]
    assert not problems, "\n".join(problems)


def test_detected_types_and_titles(
    client: TestClient, auth: AuthFactory, corpus: dict[str, str]
) -> None:
    headers = auth("acme")
    docs = {
        kind: client.get(f"/v1/documents/{i}", headers=headers).json() for kind, i in corpus.items()
    }
    assert docs["pdf"]["content_type"] == "application/pdf"
    assert docs["docx"]["content_type"].endswith("wordprocessingml.document")
    assert docs["html"]["content_type"] == "text/html"
    assert docs["md"]["content_type"] == "text/markdown"
    assert docs["txt"]["content_type"] == "text/plain"
    assert docs["html"]["title"] == "A test page"
    assert docs["pdf"]["title"] == "A test PDF"
    assert all(doc["chunk_count"] >= 1 for doc in docs.values())


def test_script_and_style_never_reach_the_index(
    client: TestClient, auth: AuthFactory, corpus: dict[str, str]
) -> None:
    body = client.get(
        "/v1/search", headers=auth("acme"), params={"q": "secretScript", "mode": "keyword"}
    ).json()
    assert body["results"] == []


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic"])
def test_a_tenant_with_the_same_phrases_sees_only_its_own_documents(
    client: TestClient, auth: AuthFactory, corpus: dict[str, str], mode: str
) -> None:
    other = auth("rival")
    mine: set[str] = set()
    for name, content_type, make, phrase in CASES.values():
        response = client.post(
            "/v1/documents",
            headers=other,
            files={
                "file": (
                    name,
                    make(f"Rival copy. The {phrase} again, twice: {phrase}."),
                    content_type,
                )
            },
        )
        mine.add(response.json()["document"]["id"])
        wait_for_job(client, response.json()["job"]["id"], other)
    for phrase in (case[3] for case in CASES.values()):
        for tenant, expected in (("rival", mine), ("acme", set(corpus.values()))):
            body = client.get(
                "/v1/search", headers=auth(tenant), params={"q": phrase, "mode": mode, "k": 50}
            ).json()
            found = {hit["document_id"] for hit in body["results"]}
            assert found, (tenant, phrase)
            assert found <= expected, (tenant, phrase)


@pytest.mark.parametrize("mode", ["hybrid", "keyword", "semantic"])
def test_another_tenant_finds_nothing(
    client: TestClient, auth: AuthFactory, corpus: dict[str, str], mode: str
) -> None:
    for phrase in (case[3] for case in CASES.values()):
        body = client.get(
            "/v1/search", headers=auth("intruder"), params={"q": phrase, "mode": mode}
        ).json()
        assert body["results"] == []
