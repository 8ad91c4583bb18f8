"""/v1/privacy and /v1/documents/{id}/text over HTTP: roles, scopes, shapes, problems."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from spine.service.container import Services
from support.api import wait_for_job
from support.problems import assert_problem
from support.rows import unscoped

PROBLEM = "application/problem+json"
EMAIL = "jane.doe@example.com"
PHONE = "(415) 555-0132"
BODY = (
    "Minutes of the allotment committee.\n\n"
    f"Jane can be reached at {EMAIL} or on {PHONE} about the compost bays.\n\n"
    "The next meeting is in the greenhouse."
)


def ingest(
    client: TestClient,
    headers: dict[str, str],
    body: str = BODY,
    *,
    name: str = "minutes.txt",
    idempotency_key: str | None = None,
) -> str:
    extra = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    response = client.post(
        "/v1/documents",
        headers={**headers, **extra},
        files={"file": (name, body.encode(), "text/plain")},
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job"]["id"], headers)
    assert job["state"] == "SUCCEEDED", job
    document_id: str = response.json()["document"]["id"]
    return document_id


# -- Policy ---------------------------------------------------------------------------


def test_policy_defaults_to_tokenise_and_can_be_replaced_by_an_admin(
    client: TestClient, auth: AuthFactory
) -> None:
    admin = auth("acme", Role.ADMIN)
    default = client.get("/v1/privacy/policy", headers=admin)
    assert default.status_code == 200, default.text
    assert default.json() == {
        "actions": {},
        "custom": [],
        "default_action": "tokenise",
        "builtin_kinds": ["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IPV4", "IPV6"],
        "updated_at": None,
        "updated_by": None,
    }
    policy = {
        "actions": {"PHONE": "keep", "EMAIL": "redact"},
        "custom": [{"kind": "EMPLOYEE_ID", "pattern": r"EMP-\d{6}"}],
    }
    put = client.put("/v1/privacy/policy", headers=admin, json=policy)
    assert put.status_code == 200, put.text
    assert put.json()["actions"] == policy["actions"]
    assert put.json()["custom"] == policy["custom"]
    assert put.json()["updated_by"] == "test"
    assert client.get("/v1/privacy/policy", headers=admin).json() == put.json()
    # Per tenant.
    other = client.get("/v1/privacy/policy", headers=auth("rival", Role.ADMIN)).json()
    assert other["actions"] == {}


@pytest.mark.parametrize("role", [Role.READER, Role.WRITER])
def test_policy_and_forget_are_for_admins_only(
    client: TestClient, auth: AuthFactory, role: Role
) -> None:
    headers = auth("acme", role, scopes=["pii:read"])
    assert_problem(client.get("/v1/privacy/policy", headers=headers), 403, "forbidden")
    assert_problem(
        client.put("/v1/privacy/policy", headers=headers, json={"actions": {}}), 403, "forbidden"
    )
    assert_problem(
        client.post("/v1/privacy/forget", headers=headers, json={"value": EMAIL}),
        403,
        "forbidden",
    )
    assert_problem(client.get("/v1/privacy/policy"), 401, "unauthenticated")


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ({"custom": [{"kind": "EMPLOYEE_ID", "pattern": r"(?<=x)\d+"}]}, "RE2"),
        ({"custom": [{"kind": "EMPLOYEE_ID", "pattern": r"x*"}]}, "empty string"),
        ({"custom": [{"kind": "EMAIL", "pattern": r"x\d"}]}, "built-in"),
        ({"custom": [{"kind": "lower", "pattern": r"x\d"}]}, "custom.0.kind"),
        ({"actions": {"EMAIL": "shout"}}, "actions.EMAIL"),
        ({"actions": {"lower": "keep"}}, "not a kind name"),
        ({"actions": {}, "surprise": 1}, "surprise"),
    ],
)
def test_a_bad_policy_is_a_problem_and_changes_nothing(
    client: TestClient, auth: AuthFactory, policy: dict[str, Any], says: str
) -> None:
    admin = auth("acme", Role.ADMIN)
    body = assert_problem(
        client.put("/v1/privacy/policy", headers=admin, json=policy), 422, "invalid-request"
    )
    assert says in body["detail"]
    assert client.get("/v1/privacy/policy", headers=admin).json()["updated_at"] is None


def test_a_custom_pattern_applies_to_documents_processed_after_it(
    client: TestClient, auth: AuthFactory
) -> None:
    admin = auth("acme", Role.ADMIN)
    policy = {"custom": [{"kind": "EMPLOYEE_ID", "pattern": r"EMP-\d{6}"}]}
    assert client.put("/v1/privacy/policy", headers=admin, json=policy).status_code == 200
    document_id = ingest(client, admin, BODY + "\n\nBadge EMP-204817 opens the shed.")
    shown = client.get(f"/v1/documents/{document_id}/text", headers=admin).json()
    assert "EMP-204817" not in shown["text"]
    assert "<EMPLOYEE_ID:" in shown["text"]
    hits = client.get(
        "/v1/search", headers=admin, params={"q": "EMP-204817", "mode": "keyword"}
    ).json()["results"]
    assert [hit["document_id"] for hit in hits] == [document_id]


# -- Text and reveal ------------------------------------------------------------------


def test_a_reader_gets_the_scrubbed_text(client: TestClient, auth: AuthFactory) -> None:
    document_id = ingest(client, auth("acme"))
    response = client.get(f"/v1/documents/{document_id}/text", headers=auth("acme", Role.READER))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"document_id", "title", "text", "revealed", "unrevealed_tokens"}
    assert body["document_id"] == document_id
    assert body["revealed"] is False
    assert EMAIL not in body["text"]
    assert PHONE not in body["text"]
    assert body["text"].startswith("Minutes of the allotment committee.")
    assert "<EMAIL:" in body["text"]
    assert "<PHONE:" in body["text"]


@pytest.mark.parametrize("role", [Role.READER, Role.WRITER, Role.ADMIN])
def test_reveal_needs_the_pii_read_scope_whatever_the_role(
    client: TestClient, auth: AuthFactory, role: Role
) -> None:
    document_id = ingest(client, auth("acme"))
    url = f"/v1/documents/{document_id}/text?reveal=true"
    body = assert_problem(client.get(url, headers=auth("acme", role)), 403, "forbidden")
    assert "pii:read" in body["detail"]
    assert EMAIL not in str(body)
    revealed = client.get(url, headers=auth("acme", role, scopes=["pii:read"]))
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["revealed"] is True
    assert f"reached at {EMAIL} or on +14155550132 about" in revealed.json()["text"]


def test_text_of_another_tenants_document_is_not_found(
    client: TestClient, auth: AuthFactory
) -> None:
    document_id = ingest(client, auth("acme"))
    rival = auth("rival", Role.READER, scopes=["pii:read"])
    for url in (f"/v1/documents/{document_id}/text", f"/v1/documents/{document_id}/text?reveal=1"):
        assert_problem(client.get(url, headers=rival), 404, "not-found")


def test_search_by_value_finds_the_document_and_shows_its_token(
    client: TestClient, auth: AuthFactory
) -> None:
    headers = auth("acme")
    document_id = ingest(client, headers)
    ingest(client, headers, "Nothing personal in this one, only the compost bays.", name="b.txt")
    for mode in ("keyword", "hybrid"):
        response = client.get("/v1/search", headers=headers, params={"q": EMAIL, "mode": mode})
        results = response.json()["results"]
        assert results[0]["document_id"] == document_id, mode
        assert EMAIL not in response.text.replace(f'"query":"{EMAIL}"', "")
    keyword = client.get("/v1/search", headers=headers, params={"q": EMAIL, "mode": "keyword"})
    assert "&lt;<mark>EMAIL:" in keyword.json()["results"][0]["snippet"]


# -- Forget ---------------------------------------------------------------------------


def test_forget_answers_a_receipt_and_the_value_is_no_longer_revealed(
    client: TestClient, auth: AuthFactory
) -> None:
    writer = auth("acme")
    document_id = ingest(client, writer)
    admin = auth("acme", Role.ADMIN)
    response = client.post("/v1/privacy/forget", headers=admin, json={"value": EMAIL})
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["kinds"] == ["EMAIL"]
    assert len(receipt["tokens"]) == 1
    assert receipt["tokens"][0].startswith("<EMAIL:")
    assert receipt["documents_affected"] == [document_id]
    assert receipt["vault_entries_removed"] == 1
    assert receipt["documents_deleted"] == []
    assert receipt["clear_text_documents"] == []
    assert receipt["originals_deleted"] == 0
    assert "blob store" in receipt["note"]
    assert EMAIL not in response.text
    revealed = client.get(
        f"/v1/documents/{document_id}/text?reveal=true",
        headers=auth("acme", Role.READER, scopes=["pii:read"]),
    ).json()
    assert EMAIL not in revealed["text"]
    assert receipt["tokens"][0] in revealed["text"]
    assert "+14155550132" in revealed["text"]
    assert revealed["unrevealed_tokens"] == 1


def test_forget_with_delete_documents_deletes_them(client: TestClient, auth: AuthFactory) -> None:
    writer = auth("acme")
    document_id = ingest(client, writer)
    admin = auth("acme", Role.ADMIN)
    response = client.post(
        "/v1/privacy/forget", headers=admin, json={"value": PHONE, "delete_documents": True}
    )
    assert response.status_code == 200, response.text
    assert response.json()["documents_deleted"] == [document_id]
    assert_problem(client.get(f"/v1/documents/{document_id}", headers=writer), 404, "not-found")


def test_forget_of_something_that_is_no_personal_data_is_a_problem(
    client: TestClient, auth: AuthFactory
) -> None:
    admin = auth("acme", Role.ADMIN)
    body = assert_problem(
        client.post("/v1/privacy/forget", headers=admin, json={"value": "compost bays"}),
        422,
        "invalid-request",
    )
    assert "compost" not in str(body)
    assert_problem(
        client.post("/v1/privacy/forget", headers=admin, json={"value": ""}),
        422,
        "invalid-request",
    )
    assert_problem(
        client.post("/v1/privacy/forget", headers=admin, json={"value": "x" * 1001}),
        422,
        "invalid-request",
    )


# -- Delete ---------------------------------------------------------------------------


def test_delete_drops_stored_responses_that_quote_the_document(
    client: TestClient, auth: AuthFactory, services: Services
) -> None:
    headers = auth("acme")
    document_id = ingest(client, headers, name="jane-secret-plan.txt", idempotency_key="up-1")
    kept = ingest(client, headers, "Another set of minutes.", name="b.txt", idempotency_key="up-2")

    def stored_bodies() -> list[str]:
        with services.db.read() as uow:
            conn = unscoped(uow)
            rows = conn.execute(text("SELECT response_body FROM idempotency_keys")).all()
        return [row[0] or "" for row in rows]

    assert any("jane-secret-plan" in body for body in stored_bodies())
    response = client.delete(f"/v1/documents/{document_id}", headers=headers)
    assert response.status_code == 204
    bodies = stored_bodies()
    assert not any(document_id in body or "jane-secret-plan" in body for body in bodies)
    assert any(kept in body for body in bodies)
    with services.db.read() as uow:
        assert uow.privacy.vault("acme", document_id) == []


def test_title_and_metadata_are_scrubbed_at_upload_and_stay_revealable(
    client: TestClient, auth: Any
) -> None:
    writer = auth("acme")
    response = client.post(
        "/v1/documents",
        headers=writer,
        files={"file": ("scan.pdf", b"%PDF-1.7\nnot really a pdf", "application/pdf")},
        data={
            "title": "Invoice for jane.doe@example.com",
            "metadata": '{"owner": "jane.doe@example.com", "tags": ["ssn 123-45-6789"]}',
        },
    )
    assert response.status_code == 202, response.text
    document = response.json()["document"]
    # Before processing, and whatever processing does (this file fails), no reader
    # ever sees the values.
    for body in (response.text, client.get(f"/v1/documents/{document['id']}", headers=writer).text):
        assert "jane.doe@example.com" not in body
        assert "123-45-6789" not in body
    assert document["title"].startswith("Invoice for <EMAIL:")
    assert document["metadata"]["owner"].startswith("<EMAIL:")
    # The vault holds them: forgetting the address finds this document.
    receipt = client.post(
        "/v1/privacy/forget",
        headers=auth("acme", Role.ADMIN),
        json={"value": "jane.doe@example.com"},
    ).json()
    assert document["id"] in receipt["documents_affected"]


def test_processing_keeps_the_vault_entries_of_the_uploaded_title(
    client: TestClient, auth: Any
) -> None:
    admin = auth("acme", Role.ADMIN)
    response = client.post(
        "/v1/documents",
        headers=admin | {"Idempotency-Key": "upload-1"},
        files={"file": ("notes.txt", b"Minutes of the garden committee.", "text/plain")},
        data={"title": "Minutes sent to jane.doe@example.com"},
    )
    assert response.status_code == 202, response.text
    document_id = response.json()["document"]["id"]
    assert wait_for_job(client, response.json()["job"]["id"], admin)["state"] == "SUCCEEDED"

    receipt = client.post(
        "/v1/privacy/forget", headers=admin, json={"value": "jane.doe@example.com"}
    ).json()

    # Only the title held the address: its vault entry outlived the processing.
    assert receipt["documents_affected"] == [document_id]
    assert receipt["vault_entries_removed"] == 1
    # The stored response of the upload quoted the title's token: it is gone too, so the
    # same key runs afresh (a duplicate of the bytes) instead of replaying it.
    again = client.post(
        "/v1/documents",
        headers=admin | {"Idempotency-Key": "upload-1"},
        files={"file": ("notes.txt", b"Minutes of the garden committee.", "text/plain")},
        data={"title": "Minutes sent to jane.doe@example.com"},
    )
    assert "idempotent-replayed" not in again.headers
    assert again.json()["duplicate"] is True
