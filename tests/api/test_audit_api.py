"""The audit log over HTTP: what gets recorded, who may read it, and request ids."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.api.app import create_app
from spine.domain.auth import Role
from spine.ports import AuditEntry, AuditHead, Database, UnitOfWork
from spine.service import audit
from spine.service.audit import Sampler
from spine.service.container import Services
from support.api import wait_for_job

ADMIN = Role.ADMIN
GENERATED = re.compile(r"[0-9a-f]{32}")


def entries(services: Services, tenant: str) -> list[AuditEntry]:
    """Oldest first, straight from the database."""
    with services.db.read() as uow:
        return list(uow.audit.chain(tenant))


def raw_log(services: Services) -> str:
    """Every stored field of every tenant, as one string to search for leaks."""
    with services.db.read() as uow:
        tenants = uow.housekeeping.audited_tenants()
        return repr([list(uow.audit.chain(t)) for t in sorted(tenants)])


def upload(
    client: TestClient,
    headers: dict[str, Any],
    data: bytes,
    *,
    name: str = "a.txt",
    content_type: str = "text/plain",
    **form: str,
) -> Any:
    return client.post(
        "/v1/documents",
        headers=headers,
        files={"file": (name, data, content_type)},
        data=form or None,
    )


def test_an_admin_reads_the_tenants_log_newest_first_in_pages(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    ids = []
    for i in range(3):
        response = upload(client, auth("acme"), f"text number {i}".encode())
        assert response.status_code == 202, response.text
        ids.append(response.json()["document"]["id"])

    first = client.get("/v1/audit", headers=auth("acme", ADMIN), params={"limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [e["resource"] for e in page["items"]] == [ids[2], ids[1]]
    rest = client.get(
        "/v1/audit", headers=auth("acme", ADMIN), params={"limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [e["resource"] for e in rest["items"]] == [ids[0]]
    assert rest["next_cursor"] is None
    item = page["items"][0]
    assert (item["actor"], item["action"], item["outcome"]) == (
        "test",
        "document.upload",
        "success",
    )
    assert set(item) == {
        "seq", "at", "actor", "action", "resource", "request_id", "outcome", "prev_hash", "hash"
    }  # fmt: skip
    assert item["prev_hash"] == page["items"][1]["hash"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"cursor": "abc"}])
def test_bad_paging_is_a_422(client: TestClient, auth: AuthFactory, params: dict[str, Any]) -> None:
    response = client.get("/v1/audit", headers=auth("acme", ADMIN), params=params)
    assert response.status_code == 422
    assert response.json()["type"] == "invalid-request"


def test_a_writer_is_refused_and_the_refusal_is_recorded(
    client: TestClient, auth: AuthFactory
) -> None:
    refused = client.get("/v1/audit", headers=auth("acme") | {"X-Request-ID": "denied-1"})
    assert refused.status_code == 403
    assert refused.json()["type"] == "forbidden"
    assert refused.headers["X-Request-ID"] == "denied-1"

    items = client.get("/v1/audit", headers=auth("acme", ADMIN)).json()["items"]
    denied = [e for e in items if e["action"] == "auth.denied"]
    assert len(denied) == 1
    assert denied[0] | {"seq": 0, "at": 0, "prev_hash": 0, "hash": 0} == {
        "seq": 0,
        "at": 0,
        "prev_hash": 0,
        "hash": 0,
        "actor": "test",
        "action": "auth.denied",
        "resource": "GET /v1/audit",
        "request_id": "denied-1",
        "outcome": "forbidden",
    }


def forged_token(tenant: str) -> dict[str, str]:
    token = jwt.encode(
        {"sub": "mallory", "tenant": tenant, "role": "admin", "exp": 4102444800},
        "not-the-secret-" + "y" * 40,
        algorithm="HS256",
    )
    return {"Authorization": f"Bearer {token}"}


def test_a_rejected_token_is_recorded_under_no_tenant(
    client: TestClient, services: Services
) -> None:
    response = client.delete(
        "/v1/documents/doc_x", headers=forged_token("acme") | {"X-Request-ID": "forged-1"}
    )
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "forged-1"
    missing = client.get("/v1/documents")
    assert missing.status_code == 401

    rejected = entries(services, audit.NO_TENANT)
    assert {(e.actor, e.action, e.outcome) for e in rejected} == {
        ("anonymous", "auth.token_rejected", "unauthenticated")
    }
    assert [e.resource for e in rejected] == [
        "DELETE /v1/documents/{document_id}",
        "GET /v1/documents",
    ]
    assert rejected[0].request_id == "forged-1"
    assert GENERATED.fullmatch(rejected[1].request_id)
    # The tenant it claimed never sees it, and nothing of the claim is kept.
    assert entries(services, "acme") == []
    assert "mallory" not in raw_log(services)


def test_a_rejection_flood_is_sampled_and_summarised(services: Services, auth: AuthFactory) -> None:
    now = [0.0]
    app = create_app(services=services)
    app.state.audit_sampler = Sampler(per_minute=2, clock=lambda: now[0])
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(5):
            assert client.get("/v1/documents", headers=forged_token("acme")).status_code == 401
        assert len(entries(services, audit.NO_TENANT)) == 2
        now[0] = 60.0
        assert client.get("/v1/documents", headers=forged_token("acme")).status_code == 401
    rejected = entries(services, audit.NO_TENANT)
    assert [(e.resource, e.outcome) for e in rejected[2:]] == [
        ("count:3", "suppressed"),
        ("GET /v1/documents", "unauthenticated"),
    ]
    assert audit.verify(services.db)[0].ok


def upload_corrupt_pdf(client: TestClient, headers: dict[str, str], seed: int) -> str:
    data = b"%PDF-1.7\n" + random.Random(seed).randbytes(2000)
    response = upload(client, headers, data, name="bad.pdf", content_type="application/pdf")
    assert response.status_code == 202, response.text
    return str(response.json()["job"]["id"])


def test_writes_are_recorded_with_the_callers_request_id(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    def rid(value: str) -> dict[str, str]:
        return auth("acme") | {"X-Request-ID": value}

    uploaded = upload(client, rid("up-1"), b"some plain text")
    document_id = uploaded.json()["document"]["id"]
    duplicate = upload(client, rid("up-2"), b"some plain text")
    assert duplicate.status_code == 200
    assert client.delete(f"/v1/documents/{document_id}", headers=rid("del-1")).status_code == 204
    assert client.delete(f"/v1/documents/{document_id}", headers=rid("del-2")).status_code == 404

    job_ids = [upload_corrupt_pdf(client, auth("acme"), seed) for seed in (1, 2)]
    for job_id in job_ids:
        assert wait_for_job(client, job_id, auth("acme"))["state"] == "FAILED"
    assert client.post(f"/v1/jobs/{job_ids[0]}/retry", headers=rid("retry-1")).status_code == 200
    wait_for_job(client, job_ids[0], auth("acme"))
    bulk = client.post("/v1/jobs/retry", headers=rid("bulk-1"), json={"limit": 10})
    assert bulk.status_code == 200, bulk.text
    assert sorted(bulk.json()["retried"]) == sorted(job_ids)

    by_request = {
        e.request_id: (e.action, e.resource, e.outcome, e.actor)
        for e in entries(services, "acme")
        if e.request_id != "bulk-1"
    }
    assert by_request["up-1"] == ("document.upload", document_id, "success", "test")
    assert by_request["up-2"] == ("document.upload", document_id, "duplicate", "test")
    assert by_request["del-1"] == ("document.delete", document_id, "success", "test")
    assert by_request["del-2"] == ("document.delete", document_id, "not-found", "test")
    assert by_request["retry-1"] == ("job.retry", job_ids[0], "success", "test")
    bulk_entries = [e for e in entries(services, "acme") if e.request_id == "bulk-1"]
    assert sorted(e.resource for e in bulk_entries) == sorted(job_ids)
    assert {(e.action, e.outcome) for e in bulk_entries} == {("dlq.retry", "success")}
    assert all(report.ok for report in audit.verify(services.db))


def test_an_idempotent_replay_records_nothing_new(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    headers = auth("acme") | {"Idempotency-Key": "k-1"}
    first = upload(client, headers, b"replayed text")
    again = upload(client, headers, b"replayed text")
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.json() == again.json()
    assert [e.action for e in entries(services, "acme")] == ["document.upload"]


def test_no_personal_data_or_text_reaches_the_log(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    secret_words = ["jane.doe@example.com", "Confidential Merger", "555-0199", "zanzibar"]
    response = upload(
        client,
        auth("acme"),
        b"jane.doe@example.com called 555-0199 about zanzibar",
        name="jane.doe@example.com.txt",
        title="Confidential Merger",
        metadata='{"owner": "zanzibar"}',
    )
    assert response.status_code == 202, response.text
    gone = client.delete("/v1/documents/jane.doe@example.com", headers=auth("acme"))
    assert gone.status_code == 404
    found = client.get("/v1/search", headers=auth("acme"), params={"q": "zanzibar"})
    assert found.status_code == 200
    assert upload(client, auth("acme"), b"", name="zanzibar.txt").status_code == 415

    log = raw_log(services)
    for word in secret_words:
        assert word not in log
    outcomes = [(e.action, e.resource, e.outcome) for e in entries(services, "acme")]
    assert ("document.delete", "-", "not-found") in outcomes
    assert ("document.upload", "-", "unsupported-media-type") in outcomes


def test_an_admin_never_sees_another_tenants_entries(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    acme_doc = upload(client, auth("acme"), b"acme's text").json()["document"]["id"]
    client.get("/v1/audit", headers=auth("acme"))  # an acme refusal
    client.get("/v1/documents", headers=forged_token("other"))  # a "-" rejection
    other_doc = upload(client, auth("other"), b"other's text").json()["document"]["id"]

    seen = client.get("/v1/audit", headers=auth("other", ADMIN), params={"limit": 200}).json()
    assert [e["resource"] for e in seen["items"]] == [other_doc]
    # Positions count the tenant's own entries only: acme's activity shows nowhere.
    assert [e["seq"] for e in seen["items"]] == [1]
    assert len(entries(services, "acme")) >= 2
    # Even a cursor far past every entry pages only through other's.
    beyond = 1000
    assert (
        client.get(
            "/v1/audit", headers=auth("other", ADMIN), params={"cursor": str(beyond)}
        ).json()["items"]
        == seen["items"]
    )
    mine = client.get("/v1/audit", headers=auth("acme", ADMIN), params={"limit": 200}).json()
    assert acme_doc in {e["resource"] for e in mine["items"]}
    assert other_doc not in {e["resource"] for e in mine["items"]}


# -- request ids --------------------------------------------------------------------------


def test_a_valid_request_id_is_echoed_on_success_and_errors(
    client: TestClient, auth: AuthFactory
) -> None:
    for value in ("abc-123", "A.b:c_d-e", "x" * 128):
        headers = auth("acme") | {"X-Request-ID": value}
        assert client.get("/v1/documents", headers=headers).headers["X-Request-ID"] == value
        missing = client.get("/v1/documents/doc_unknown", headers=headers)
        assert missing.status_code == 404
        assert missing.headers["X-Request-ID"] == value
    assert client.get("/healthz", headers={"X-Request-ID": "h-1"}).headers["X-Request-ID"] == "h-1"


@pytest.mark.parametrize("value", ["has space", "x" * 129, "semi;colon", "ünïcode", "a/b"])
def test_an_unsafe_request_id_is_replaced(
    client: TestClient, services: Services, auth: AuthFactory, value: str
) -> None:
    # Raw UTF-8 bytes on the wire: what a careless client sends for non-ASCII.
    headers: dict[str, Any] = auth("acme") | {"X-Request-ID": value.encode()}
    response = upload(client, headers, b"text with an unsafe request id")
    assert response.status_code == 202
    echoed = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(echoed)
    assert [e.request_id for e in entries(services, "acme")] == [echoed]


def test_each_request_without_an_id_gets_its_own(client: TestClient) -> None:
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert all(GENERATED.fullmatch(i) for i in ids)


def test_the_size_limits_413_carries_the_request_id(
    client: TestClient, services: Services, auth: AuthFactory
) -> None:
    too_big = b'{"limit": 1, "pad": "' + b"x" * (services.settings.max_json_body_bytes + 1) + b'"}'
    response = client.post(
        "/v1/jobs/retry",
        headers=auth("acme") | {"X-Request-ID": "big-1", "Content-Type": "application/json"},
        content=too_big,
    )
    assert response.status_code == 413
    assert response.headers["X-Request-ID"] == "big-1"


def test_an_unhandled_error_is_a_500_with_the_request_id(services: Services) -> None:
    app = create_app(services=services)

    @app.get("/explode")
    def explode() -> None:
        """Fault injection: a route with a bug."""
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/explode", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "boom-1"
    assert response.json()["type"] == "internal-error"
    assert "boom" not in response.text


# -- when the audit log cannot be written ---------------------------------------------------


class _FailingAudit:
    """Reads pass through; every append fails as a full disk would."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def head(self, tenant_id: str) -> AuditHead | None:
        return self._real.head(tenant_id)

    def append(self, tenant_id: str, entry: AuditEntry, *, expected: AuditHead | None) -> None:
        raise OSError("disk is full")


class AuditlessDatabase:
    """Fault injection: the real database, except that audit appends always fail."""

    def __init__(self, real: Database) -> None:
        self.real = real

    @contextmanager
    def _write(self) -> Iterator[UnitOfWork]:
        with self.real.write() as uow:
            yield replace(uow, audit=_FailingAudit(uow.audit))

    def write(self) -> AbstractContextManager[UnitOfWork]:
        return self._write()

    def read(self) -> AbstractContextManager[UnitOfWork]:
        return self.real.read()

    def ping(self) -> None:
        self.real.ping()

    def on_jobs_queued(self, callback: Callable[[], None]) -> None:
        self.real.on_jobs_queued(callback)

    def close(self) -> None:
        self.real.close()


def test_a_failed_audit_append_does_not_fail_the_write(
    services: Services, auth: AuthFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = replace(services, db=AuditlessDatabase(services.db))
    before = audit.append_failures()
    with TestClient(create_app(services=broken), raise_server_exceptions=False) as client:
        response = upload(client, auth("acme"), b"written, not audited")
        assert response.status_code == 202
        document_id = response.json()["document"]["id"]
        assert client.get(f"/v1/documents/{document_id}", headers=auth("acme")).status_code == 200
    assert audit.append_failures() == before + 1
    assert entries(services, "acme") == []
    assert "audit.append_failed" in capsys.readouterr().out
