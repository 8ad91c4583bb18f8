"""No personal value ever reaches a log: every structlog event (with all its fields), every
stdlib log record and everything written to stdout/stderr (the worker's extraction
children included) during a PII-heavy ingest, search, reveal and forget, over HTTP with
the real worker, is searched for each value."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from spine.observability.logging import REDACTED
from support.api import wait_for_job
from support.telemetry import json_logs

VALUES = {
    # as written -> canonical
    "maria.lopez@example.com": "maria.lopez@example.com",
    "(415) 555-0132": "+14155550132",
    "4111 1111 1111 1111": "4111111111111111",
    "DE89 3704 0044 0532 0130 00": "DE89370400440532013000",
    "123-45-6789": "123-45-6789",
    "203.0.113.77": "203.0.113.77",
    "EMP-204817": "EMP-204817",
}
BODY = (
    "Onboarding record.\n\n"
    "New hire maria.lopez@example.com, phone (415) 555-0132, badge EMP-204817. Salary "
    "goes to DE89 3704 0044 0532 0130 00; the travel card is 4111 1111 1111 1111 and the "
    "SSN on file is 123-45-6789. She signed in from 203.0.113.77.\n\n"
    "The remaining paragraphs describe the desk, the laptop and the parking space."
)


def needles() -> list[str]:
    found = set()
    for written, canonical in VALUES.items():
        found |= {written, canonical, written.lower(), canonical.lower()}
    found.add("5550132")  # the phone's digits, however formatted
    found.add("8370400440532")  # the IBAN's middle, however grouped
    return sorted(found)


@pytest.fixture
def structlog_events() -> Any:
    with structlog.testing.capture_logs() as events:
        yield events


def test_ingest_search_reveal_and_forget_log_no_value(
    client: TestClient,
    auth: AuthFactory,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    structlog_events: list[dict[str, Any]],
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = auth("acme", Role.ADMIN)
    policy = {"custom": [{"kind": "EMPLOYEE_ID", "pattern": r"EMP-\d{6}"}]}
    assert client.put("/v1/privacy/policy", headers=admin, json=policy).status_code == 200
    upload = client.post(
        "/v1/documents",
        headers=admin,
        files={"file": ("maria.lopez@example.com.txt", BODY.encode(), "text/plain")},
        data={"title": "Record of maria.lopez@example.com"},
    )
    assert upload.status_code == 202, upload.text
    document_id = upload.json()["document"]["id"]
    assert wait_for_job(client, upload.json()["job"]["id"], admin)["state"] == "SUCCEEDED"

    for written in VALUES:
        for mode in ("keyword", "hybrid"):
            response = client.get("/v1/search", headers=admin, params={"q": written, "mode": mode})
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["document_id"] == document_id
    reader = auth("acme", Role.READER, scopes=["pii:read"])
    revealed = client.get(f"/v1/documents/{document_id}/text?reveal=true", headers=reader)
    assert "maria.lopez@example.com" in revealed.text
    refused = client.get(f"/v1/documents/{document_id}/text?reveal=true", headers=admin)
    assert refused.status_code == 403
    for written in ("maria.lopez@example.com", "(415) 555-0132", "EMP-204817"):
        forget = client.post("/v1/privacy/forget", headers=admin, json={"value": written})
        assert forget.status_code == 200, forget.text
    bad = client.post("/v1/privacy/forget", headers=admin, json={"value": "no pii here"})
    assert bad.status_code == 422
    assert client.delete(f"/v1/documents/{document_id}", headers=admin).status_code == 204

    printed = capfd.readouterr()
    records = [
        f"{record.name} {record.getMessage()} {record.args!r} {record.exc_text or ''} "
        f"{vars(record)!r}"
        for record in caplog.records
        # The test's own HTTP client logs the URLs it requests; it is no part of Spine.
        if not record.name.startswith(("httpx", "httpcore"))
    ]
    logged = "\n".join(
        [repr(event) for event in structlog_events] + records + [printed.out, printed.err]
    )
    # The capture saw the work: per-kind counts were logged, and the values were not.
    kinds = [e for e in structlog_events if e.get("event") == "pii.scrubbed"]
    assert kinds, structlog_events
    # The body's address; the title's was scrubbed at upload, before processing.
    assert kinds[0]["kinds"]["EMAIL"] == 1
    assert kinds[0]["kinds"]["EMPLOYEE_ID"] == 1
    assert any(e.get("event") == "pii.forgotten" for e in structlog_events)
    assert any(e.get("event") == "pii.revealed" for e in structlog_events)
    leaked = [value for value in needles() if value.lower() in logged.lower()]
    where = [line for line in logged.splitlines() if any(v.lower() in line.lower() for v in leaked)]
    assert leaked == [], where[:5]


def test_the_request_log_names_the_route_never_the_path_or_query(
    client: TestClient, auth: AuthFactory
) -> None:
    """``spine serve`` turns uvicorn's access log off: Spine's own ``http.request`` line
    names the route template, so neither a search's query nor whatever a caller put where
    an id belongs is written down."""
    with json_logs() as lines:
        client.get("/v1/search", headers=auth(), params={"q": "maria.lopez@example.com"})
        client.get("/v1/documents/jane.doe@example.com", headers=auth())
        client.post("/v1/jobs/4111%201111%201111%201111/retry", headers=auth())
    # The test's own HTTP client logs the URLs it requests; it is no part of Spine.
    spines = [e for e in lines.events() if not e["logger"].startswith(("httpx", "httpcore"))]
    printed = repr(spines)
    routes = [e["route"] for e in spines if e["event"] == "http.request"]
    assert routes == ["/v1/search", "/v1/documents/{document_id}", "/v1/jobs/{job_id}/retry"]
    for value in ("maria.lopez", "jane.doe", "4111"):
        assert value not in printed


def test_fields_that_would_hold_text_are_redacted() -> None:
    with json_logs() as lines:
        structlog.get_logger("spine.test").info(
            "test.event", text="maria.lopez@example.com", title="Jane's file", chunks=3
        )
    (event,) = [e for e in lines.events() if e["event"] == "test.event"]
    assert event["text"] == event["title"] == REDACTED
    assert event["chunks"] == 3
