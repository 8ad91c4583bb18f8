"""Data segregation through the HTTP API: between tenants, and between subjects' jobs.

The stateful test lets three tenants (two subjects in one, one of them its admin; a
reader in another) interleave uploads, reads, searches, retries, deletes and guesses at
each other's ids, against the real app (real SQLite, the real embedding model, one
worker), which every example shares under tenant names of its own. Every document holds
marker words that belong to its tenant. After every step:

- no response body or header a caller has seen holds an id, marker, title, filename,
  subject or name that belongs to another tenant (nor, to a non-admin, the id of a job
  another subject of the tenant queued), except for the id the caller itself sent;
- what each caller can list and count is exactly what the model says it owns;
- a foreign id answers exactly like an id that never existed: the same status, the same
  problem type and title, and a body that differs only by echoing the caller's input.

The plain tests below pin the same rules down one route at a time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from starlette.testclient import TestClient

from conftest import TEST_SECRET
from spine.domain.auth import Role
from spine.domain.documents import new_id
from spine.domain.jobs import JobState
from spine.service.container import Services
from spine.settings import Settings
from support.api import bearer, wait_for_job

UNFINISHED = {JobState.PENDING, JobState.RUNNING, JobState.RETRYING}
#: Headers whose values differ from one request to the next whatever the request.
VOLATILE_HEADERS = ("date", "x-request-id", "ratelimit", "x-ratelimit", "retry-after")
TOPICS = (
    "Bees pollinate the alpine meadows in early summer.",
    "The harbour crane lifted containers through the night.",
    "A sourdough starter needs flour, water and patience.",
    "Glaciers carve wide valleys over thousands of years.",
)


@dataclass(frozen=True)
class Caller:
    name: str
    tenant: str
    subject: str
    role: Role

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def writes(self) -> bool:
        return self.role is not Role.READER


#: (name, tenant, role): two subjects in alpha, one of them its admin; a reader in beta.
CAST = (
    ("alice", "alpha", Role.WRITER),
    ("root", "alpha", Role.ADMIN),
    ("bob", "beta", Role.WRITER),
    ("rita", "beta", Role.READER),
    ("carol", "gamma", Role.WRITER),
)
NAMES = sorted(name for name, _, _ in CAST)
WRITERS = sorted(name for name, _, role in CAST if role is not Role.READER)


def cast_for_run(run: int) -> dict[str, Caller]:
    """Tenants and subjects no earlier example used: the examples share one app and one
    database. No name is a substring of another run's (``t1x-alpha``, ``t12x-alpha``)."""
    return {
        name: Caller(name, f"t{run}x-{tenant}", f"{name}@{tenant}{run}x", role)
        for name, tenant, role in CAST
    }


@dataclass
class ModelDocument:
    id: str
    tenant: str
    tag: str  # the marker, title and file name words all carry it
    data: bytes
    filename: str
    content_type: str
    corrupt: bool
    latest_job: str
    deleted: bool = False

    @property
    def marker(self) -> str:
        return f"zq{self.tag}xv"

    @property
    def title_word(self) -> str:
        return f"zt{self.tag}yw"

    @property
    def owned_strings(self) -> set[str]:
        return {self.id, self.marker, self.title_word, self.filename}


@dataclass
class ModelJob:
    id: str
    tenant: str
    document_id: str
    created_by: str
    corrupt: bool
    deleted: bool = False


@dataclass
class Seen:
    """A response as the caller saw it, reduced to the text that could leak."""

    caller: Caller
    what: str
    text: str


def problem_shape(response: httpx.Response, echoed: str) -> tuple[Any, ...]:
    """What must not tell a foreign id from an unknown one: everything but the echo of
    the caller's own input (and headers that vary by request anyway)."""
    body = response.text.replace(echoed, "<id>")
    headers = sorted(
        (name, value.replace(echoed, "<id>"))
        for name, value in response.headers.items()
        if not name.lower().startswith(VOLATILE_HEADERS)
    )
    payload = response.json() if response.content else None
    kind = (payload.get("type"), payload.get("title")) if isinstance(payload, dict) else None
    return response.status_code, kind, body, headers


@dataclass
class SharedApp:
    """The real app (real SQLite, the real model, one worker), shared by every example:
    starting one per example would be most of the run time."""

    client: TestClient
    services: Services
    settings: Settings
    runs: int = 0
    uploads: int = 0

    def wait_until_idle(self, tenants: Iterable[str], timeout: float = 60.0) -> None:
        """Until every job of ``tenants`` has ended; read straight from the database, as
        no caller may see all of them."""
        deadline = time.monotonic() + timeout
        while True:
            with self.services.db.read() as uow:
                busy = sum(
                    count
                    for tenant in tenants
                    for state, count in uow.jobs.count_by_state(tenant).items()
                    if state in UNFINISHED
                )
            if busy == 0:
                return
            assert time.monotonic() < deadline, f"{busy} jobs still unfinished"
            time.sleep(0.05)


class TenantIsolationMachine(RuleBasedStateMachine):
    def __init__(self, app: SharedApp) -> None:
        super().__init__()
        self.app = app
        app.runs += 1
        self.callers = cast_for_run(app.runs)
        self.tenants = sorted({caller.tenant for caller in self.callers.values()})
        # Every token may reveal personal data: the reveal route is one more to guess at.
        self.headers = {
            name: bearer(
                app.settings, TEST_SECRET, c.tenant, c.role, subject=c.subject, scopes=["pii:read"]
            )
            for name, c in self.callers.items()
        }
        self.documents: dict[str, ModelDocument] = {}
        self.jobs: dict[str, ModelJob] = {}
        # (tenant, subject, Idempotency-Key) -> document: a key belongs to one subject.
        self.keys: dict[tuple[str, str, str], str] = {}
        self.settled = True  # every job has ended since the last change to the queue
        # Something may have changed what callers can list since the views were checked:
        # any request but a GET (a foreign id's DELETE included), or jobs ending.
        self.changed = True
        # The text (and reveal) route may not exist yet: it is guessed at where it does.
        self.text_route = "/v1/documents/{document_id}/text" in app.client.app.openapi()["paths"]
        # Foreign ids each tenant's callers guessed: its audit log may repeat them.
        self.guessed: dict[str, set[str]] = {tenant: set() for tenant in self.tenants}

    # -- the model's view ----------------------------------------------------------------

    def live_documents(self, tenant: str) -> dict[str, ModelDocument]:
        return {d.id: d for d in self.documents.values() if d.tenant == tenant and not d.deleted}

    def visible_jobs(self, caller: Caller) -> dict[str, ModelJob]:
        return {
            j.id: j
            for j in self.jobs.values()
            if j.tenant == caller.tenant
            and not j.deleted
            and (caller.admin or j.created_by == caller.subject)
        }

    def forbidden(self, caller: Caller) -> set[str]:
        """Strings that must never reach ``caller``."""
        strings: set[str] = set()
        for document in self.documents.values():
            if document.tenant != caller.tenant:
                strings |= document.owned_strings
        for job in self.jobs.values():
            if job.tenant != caller.tenant:
                strings.add(job.id)
            elif not caller.admin and job.created_by != caller.subject:
                strings.add(job.id)  # another subject's job, in the caller's own tenant
        for other in self.callers.values():
            if other.tenant != caller.tenant:
                strings |= {other.tenant, other.subject}
        return strings

    # -- talking to the app --------------------------------------------------------------

    def call(
        self, caller: Caller, method: str, url: str, *, echoed: Iterable[str] = (), **kw: Any
    ) -> httpx.Response:
        """Send a request as ``caller`` and check what came back for leaks. ``echoed``: what
        the caller's tenant sent itself, which the answer may repeat."""
        headers = {**self.headers[caller.name], **kw.pop("headers", {})}
        self.changed |= method != "GET"
        response = self.app.client.request(method, url, headers=headers, **kw)
        text = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        for own_input in echoed:
            text = text.replace(own_input, "<the caller's own input>")
        self.check_leaks(Seen(caller, f"{method} {url} -> {response.status_code}", text))
        return response

    def check_leaks(self, seen: Seen) -> None:
        leaked = sorted(s for s in self.forbidden(seen.caller) if s in seen.text)
        assert not leaked, f"{seen.caller.name} saw {leaked} in {seen.what}: {seen.text[:600]}"

    def pick_writer(self, data: st.DataObject) -> Caller:
        return self.callers[data.draw(st.sampled_from(WRITERS), label="caller")]

    def pick_caller(self, data: st.DataObject) -> Caller:
        return self.callers[data.draw(st.sampled_from(NAMES), label="caller")]

    # -- rules -----------------------------------------------------------------------------

    @initialize()
    def one_document_per_tenant(self) -> None:
        """Something to guess at from the first step on."""
        for name in ("alice", "bob", "carol"):
            self.do_upload(self.callers[name], corrupt=False, key=None, topic=0)

    @rule(
        data=st.data(),
        corrupt=st.sampled_from([False, False, False, True]),
        key=st.sampled_from([None, None, "shared-key-1", "shared-key-2"]),
        topic=st.integers(0, len(TOPICS) - 1),
    )
    def upload(self, data: st.DataObject, corrupt: bool, key: str | None, topic: int) -> None:
        self.do_upload(self.pick_writer(data), corrupt=corrupt, key=key, topic=topic)

    def do_upload(self, caller: Caller, *, corrupt: bool, key: str | None, topic: int) -> None:
        self.app.uploads += 1
        number = self.app.uploads
        tag = f"{caller.tenant.split('-')[-1]}{number}"
        marker, title_word = f"zq{tag}xv", f"zt{tag}yw"
        if corrupt:
            # Bytes that claim to be a PDF and are not: a permanent failure, a dead letter.
            data = b"%PDF-1.7\n" + random.Random(number).randbytes(600)
            filename, content_type = f"zf{tag}kw.pdf", "application/pdf"
        else:
            data = f"{TOPICS[topic]} Field notes {marker}.".encode()
            filename, content_type = f"zf{tag}kw.txt", "text/plain"
        headers = {"Idempotency-Key": key} if key else {}
        response = self.call(
            caller,
            "POST",
            "/v1/documents",
            headers=headers,
            files={"file": (filename, data, content_type)},
            data={"title": f"Notes {title_word}"},
        )
        if key is not None and (caller.tenant, caller.subject, key) in self.keys:
            # The caller used this key for another upload: refused, nothing stored.
            assert response.status_code == 422, response.text
            assert response.json()["type"] == "idempotency-key-reused"
            return
        # A key another tenant or subject used is this caller's to use afresh: no replay.
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["duplicate"] is False
        document_id, job = body["document"]["id"], body["job"]
        assert document_id not in self.documents
        assert job["id"] not in self.jobs
        assert job["created_by"] == caller.subject
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        self.documents[document_id] = ModelDocument(
            document_id, caller.tenant, tag, data, filename, content_type, corrupt, job["id"]
        )
        self.jobs[job["id"]] = ModelJob(
            job["id"], caller.tenant, document_id, caller.subject, corrupt
        )
        if key is not None:
            self.keys[(caller.tenant, caller.subject, key)] = document_id
        self.settled = False

    @rule(data=st.data(), reprocess=st.booleans())
    def upload_the_same_bytes_again(self, data: st.DataObject, reprocess: bool) -> None:
        """Within a tenant, the same bytes are the same document, whoever sends them; the
        latest job shows only to whom may read it."""
        caller = self.pick_writer(data)
        mine = sorted(self.live_documents(caller.tenant))
        if not mine:
            return
        document = self.documents[data.draw(st.sampled_from(mine), label="document")]
        response = self.call(
            caller,
            "POST",
            "/v1/documents",
            params={"reprocess": "true"} if reprocess else {},
            files={"file": (document.filename, document.data, document.content_type)},
        )
        body = response.json()
        assert body["duplicate"] is True, response.text
        assert body["document"]["id"] == document.id
        if reprocess:
            assert response.status_code == 202, response.text
            job = body["job"]
            assert job["created_by"] == caller.subject
            self.jobs[job["id"]] = ModelJob(
                job["id"], caller.tenant, document.id, caller.subject, document.corrupt
            )
            document.latest_job = job["id"]
            self.settled = False
            return
        assert response.status_code == 200, response.text
        latest = self.jobs[document.latest_job]
        if caller.admin or latest.created_by == caller.subject:
            assert body["job"]["id"] == latest.id
        else:
            assert body["job"] is None

    @rule(data=st.data())
    def read_own_document(self, data: st.DataObject) -> None:
        caller = self.pick_caller(data)
        mine = sorted(d.id for d in self.documents.values() if d.tenant == caller.tenant)
        if not mine:
            return
        document = self.documents[data.draw(st.sampled_from(mine), label="document")]
        response = self.call(caller, "GET", f"/v1/documents/{document.id}")
        if document.deleted:
            assert response.status_code == 404
            return
        assert response.status_code == 200, response.text
        assert response.json()["title"] == f"Notes {document.title_word}"
        if document.corrupt or not self.settled or not self.text_route:
            return
        # The text route gives the tenant its own words back.
        text = self.call(caller, "GET", f"/v1/documents/{document.id}/text?reveal=true")
        assert text.status_code == 200, text.text
        assert document.marker in text.json()["text"]

    @rule(data=st.data())
    def guess_a_foreign_id(self, data: st.DataObject) -> None:
        """Another tenant's document or job id (or, to a non-admin, another subject's job
        id) on every route that takes one answers exactly like an id that never was."""
        caller = self.pick_caller(data)
        visible = self.visible_jobs(caller)
        foreign = sorted(
            [("document", d.id) for d in self.documents.values() if d.tenant != caller.tenant]
            + [("job", j.id) for j in self.jobs.values() if j.id not in visible]
        )
        if not foreign:
            return
        kind, guess = data.draw(st.sampled_from(foreign), label="guess")
        unknown = new_id("doc" if kind == "document" else "job")
        self.guessed[caller.tenant].add(guess)
        if kind == "document":
            routes = [("GET", "/v1/documents/{}"), ("DELETE", "/v1/documents/{}")]
            if self.text_route:
                routes += [
                    ("GET", "/v1/documents/{}/text"),
                    ("GET", "/v1/documents/{}/text?reveal=true"),
                ]
        else:
            routes = [("GET", "/v1/jobs/{}"), ("POST", "/v1/jobs/{}/retry")]
        for method, template in routes:
            answers = [
                self.call(caller, method, template.format(i), echoed=[i]) for i in (guess, unknown)
            ]
            expected = 403 if method != "GET" and not caller.writes else 404
            assert answers[0].status_code == expected, answers[0].text
            assert problem_shape(answers[0], guess) == problem_shape(answers[1], unknown)

    @rule(
        data=st.data(),
        mode=st.sampled_from(["keyword", "semantic", "hybrid"]),
        by_topic=st.booleans(),
    )
    def search(self, data: st.DataObject, mode: str, by_topic: bool) -> None:
        """By any tenant's marker (or a topic everybody writes about): hits only ever come
        from the caller's tenant's live documents."""
        caller = self.pick_caller(data)
        target = self.documents[data.draw(st.sampled_from(sorted(self.documents)), label="doc")]
        query = data.draw(st.sampled_from(TOPICS), label="topic") if by_topic else target.marker
        response = self.call(
            caller,
            "GET",
            "/v1/search",
            params={"q": query, "mode": mode, "k": 20},
            echoed=[query],  # the answer repeats the query, nothing else of the marker's
        )
        assert response.status_code == 200, response.text
        hits = {hit["document_id"] for hit in response.json()["results"]}
        mine = self.live_documents(caller.tenant)
        assert hits <= mine.keys()
        if by_topic or mode == "semantic":
            return
        findable = target.id in mine and not target.corrupt
        if mode == "keyword":
            if findable and not self.settled:
                assert hits <= {target.id}  # it may not be indexed yet
            else:
                assert hits == ({target.id} if findable else set()), query
        elif findable and self.settled:
            assert target.id in hits, query  # hybrid: the keyword leg finds it

    @rule(data=st.data(), dead_letter=st.booleans())
    def retry_a_visible_job(self, data: st.DataObject, dead_letter: bool) -> None:
        caller = self.pick_writer(data)
        visible = self.visible_jobs(caller)
        # Most jobs succeed: aim at the corrupt uploads' half of the time.
        candidates = sorted(j.id for j in visible.values() if j.corrupt or not dead_letter)
        if not candidates:
            return
        job = self.jobs[data.draw(st.sampled_from(candidates), label="job")]
        response = self.call(caller, "POST", f"/v1/jobs/{job.id}/retry")
        # Only a dead letter can be retried; which jobs are dead yet, the worker decides.
        assert response.status_code in (200, 409), response.text
        if response.status_code == 200:
            assert job.corrupt
            assert response.json()["created_by"] == caller.subject
            job.created_by = caller.subject  # whoever retries a job queued it again
            self.settled = False
        elif self.settled:
            assert not job.corrupt, "a settled dead letter must be retryable"

    @rule(data=st.data())
    def retry_every_visible_dead_letter(self, data: st.DataObject) -> None:
        caller = self.pick_writer(data)
        response = self.call(caller, "POST", "/v1/jobs/retry", json={})
        assert response.status_code == 200, response.text
        retried = set(response.json()["retried"])
        visible = self.visible_jobs(caller)
        assert retried <= visible.keys()
        if self.settled:
            assert retried == {j.id for j in visible.values() if j.corrupt}
        for job_id in retried:
            self.jobs[job_id].created_by = caller.subject
            self.settled = False

    @rule(data=st.data())
    def delete_own_document(self, data: st.DataObject) -> None:
        caller = self.pick_writer(data)
        mine = sorted(self.live_documents(caller.tenant))
        if not mine:
            return
        document = self.documents[data.draw(st.sampled_from(mine), label="document")]
        response = self.call(caller, "DELETE", f"/v1/documents/{document.id}")
        assert response.status_code == 204, response.text
        document.deleted = True
        for job in self.jobs.values():
            if job.document_id == document.id:
                job.deleted = True
        # A delete forgets the stored responses that quote the document: their keys too.
        self.keys = {key: doc for key, doc in self.keys.items() if doc != document.id}

    @precondition(lambda self: not self.settled)
    @rule()
    def wait_for_the_queue(self) -> None:
        self.app.wait_until_idle(self.tenants)
        self.settled = True
        self.changed = True

    @rule()
    def admin_reads_the_audit_log(self) -> None:
        """The tenant's audit log, too, holds nothing of another tenant's but the ids the
        tenant's own callers guessed at (it records what they asked for)."""
        root = self.callers["root"]
        response = self.call(
            root, "GET", "/v1/audit", params={"limit": 200}, echoed=self.guessed[root.tenant]
        )
        assert response.status_code in (200, 404), response.text  # 404: no audit route yet

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def everyone_sees_exactly_what_they_own(self) -> None:
        """Each caller's lists and counts, whenever a step may have changed them (reads
        cannot, and checking after each of them would double the run time)."""
        if not self.changed:
            return
        self.changed = False
        for tenant in self.tenants:
            reader = next(c for c in self.callers.values() if c.tenant == tenant)
            listed = self.call(reader, "GET", "/v1/documents", params={"limit": 200}).json()
            assert {d["id"] for d in listed["items"]} == self.live_documents(tenant).keys()
        for caller in self.callers.values():
            visible = self.visible_jobs(caller)
            jobs = self.call(caller, "GET", "/v1/jobs", params={"limit": 200}).json()["items"]
            assert {j["id"] for j in jobs} == visible.keys(), caller.name
            stats = self.call(caller, "GET", "/v1/jobs/stats").json()
            assert sum(stats["states"].values()) == len(visible), caller.name
            assert stats["dlq_depth"] == stats["states"]["FAILED"]
            if self.settled:
                failed = sum(1 for j in visible.values() if j.corrupt)
                assert stats["states"]["FAILED"] == failed, caller.name
                assert stats["states"]["SUCCEEDED"] == len(visible) - failed, caller.name


#: Bounded to well under a minute on a 2-core machine.
MACHINE_SETTINGS = hypothesis_settings(
    max_examples=15,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_tenants_and_subjects_never_see_each_others_data(
    client: TestClient, services: Services, settings: Settings
) -> None:
    app = SharedApp(client, services, settings)
    run_state_machine_as_test(lambda: TenantIsolationMachine(app), settings=MACHINE_SETTINGS)


# -- one route at a time ---------------------------------------------------------------------


@pytest.fixture
def as_(settings: Settings) -> Any:
    def headers(tenant: str, subject: str, role: Role = Role.WRITER) -> dict[str, str]:
        return bearer(settings, TEST_SECRET, tenant, role, subject=subject, scopes=["pii:read"])

    return headers


def upload(client: TestClient, headers: dict[str, str], data: bytes, name: str = "a.txt") -> Any:
    kind = "application/pdf" if name.endswith(".pdf") else "text/plain"
    response = client.post("/v1/documents", headers=headers, files={"file": (name, data, kind)})
    assert response.status_code == 202, response.text
    return response.json()


def dead_letter(client: TestClient, headers: dict[str, str], seed: int) -> str:
    body = upload(client, headers, b"%PDF-1.7\n" + random.Random(seed).randbytes(500), "x.pdf")
    job = wait_for_job(client, body["job"]["id"], headers)
    assert job["state"] == "FAILED"
    return str(job["id"])


def assert_answers_like_an_unknown_id(
    client: TestClient, headers: dict[str, str], method: str, template: str, guess: str
) -> None:
    unknown = new_id(guess.split("_", 1)[0])
    answers = [
        client.request(method, template.format(i), headers=headers) for i in (guess, unknown)
    ]
    assert answers[0].status_code == 404, answers[0].text
    assert answers[0].json()["type"] == "not-found"
    assert problem_shape(answers[0], guess) == problem_shape(answers[1], unknown)


def test_every_id_route_answers_another_tenants_ids_like_unknown_ones(
    client: TestClient, as_: Any
) -> None:
    owner = as_("t-alpha", "alice@alpha")
    stranger = as_("t-beta", "bob@beta")
    document = upload(client, owner, b"Alpha's private notes on hedgehogs.")
    job_id = document["job"]["id"]
    wait_for_job(client, job_id, owner)
    failed_job = dead_letter(client, owner, 1)
    document_id = document["document"]["id"]

    document_routes = [("GET", "/v1/documents/{}"), ("DELETE", "/v1/documents/{}")]
    text_routes = [("GET", "/v1/documents/{}/text"), ("GET", "/v1/documents/{}/text?reveal=true")]
    for method, template in text_routes:
        # The text route may not exist yet; where it does, it serves the owner.
        own = client.request(method, template.format(document_id), headers=owner)
        if own.status_code != 404:
            assert own.status_code == 200, own.text
            assert "hedgehogs" in own.json()["text"]
            document_routes.append((method, template))
    for method, template in document_routes:
        assert_answers_like_an_unknown_id(client, stranger, method, template, document_id)
    for job in (job_id, failed_job):
        assert_answers_like_an_unknown_id(client, stranger, "GET", "/v1/jobs/{}", job)
        assert_answers_like_an_unknown_id(client, stranger, "POST", "/v1/jobs/{}/retry", job)
    admin = as_("t-beta", "root@beta", Role.ADMIN)  # an admin of another tenant is a stranger
    assert_answers_like_an_unknown_id(client, admin, "GET", "/v1/jobs/{}", job_id)
    assert_answers_like_an_unknown_id(client, admin, "DELETE", "/v1/documents/{}", document_id)

    # Nothing the stranger tried took effect.
    assert client.get(f"/v1/documents/{document_id}", headers=owner).status_code == 200
    assert client.get(f"/v1/jobs/{failed_job}", headers=owner).json()["state"] == "FAILED"
    assert client.get("/v1/documents", headers=stranger).json()["items"] == []
    hits = client.get(
        "/v1/search", headers=stranger, params={"q": "hedgehogs", "mode": "hybrid"}
    ).json()["results"]
    assert hits == []


def test_a_writer_sees_only_the_jobs_they_queued(client: TestClient, as_: Any) -> None:
    alice, dave = as_("t-alpha", "alice@alpha"), as_("t-alpha", "dave@alpha")
    alices = upload(client, alice, b"Alice writes about otters.")["job"]
    daves = upload(client, dave, b"Dave writes about badgers.")["job"]
    assert alices["created_by"] == "alice@alpha"
    wait_for_job(client, alices["id"], alice)
    wait_for_job(client, daves["id"], dave)

    listed = client.get("/v1/jobs", headers=alice).json()["items"]
    assert [job["id"] for job in listed] == [alices["id"]]
    stats = client.get("/v1/jobs/stats", headers=alice).json()
    assert stats["states"]["SUCCEEDED"] == 1
    assert sum(stats["states"].values()) == 1
    assert_answers_like_an_unknown_id(client, alice, "GET", "/v1/jobs/{}", daves["id"])
    assert_answers_like_an_unknown_id(client, alice, "POST", "/v1/jobs/{}/retry", daves["id"])
    # Naming another subject is refused outright; naming oneself is allowed.
    for path in ("/v1/jobs", "/v1/jobs/stats"):
        refused = client.get(path, headers=alice, params={"created_by": "dave@alpha"})
        assert refused.status_code == 403
        assert refused.json()["type"] == "forbidden"
        assert daves["id"] not in refused.text
    own = client.get("/v1/jobs", headers=alice, params={"created_by": "alice@alpha"}).json()
    assert [job["id"] for job in own["items"]] == [alices["id"]]
    # Documents are the tenant's, not the subject's: both writers see both.
    assert len(client.get("/v1/documents", headers=alice).json()["items"]) == 2
    reader = as_("t-alpha", "rita@alpha", Role.READER)
    assert client.get("/v1/jobs", headers=reader).json()["items"] == []
    assert sum(client.get("/v1/jobs/stats", headers=reader).json()["states"].values()) == 0


def test_an_admin_sees_every_job_of_the_tenant_and_can_filter_by_subject(
    client: TestClient, as_: Any
) -> None:
    alice, dave = as_("t-alpha", "alice@alpha"), as_("t-alpha", "dave@alpha")
    root = as_("t-alpha", "root@alpha", Role.ADMIN)
    alices = dead_letter(client, alice, 2)
    daves = upload(client, dave, b"Dave writes about badgers.")["job"]["id"]
    wait_for_job(client, daves, dave)
    upload(client, as_("t-beta", "bob@beta"), b"Beta's jobs are no admin's of alpha.")

    listed = client.get("/v1/jobs", headers=root).json()["items"]
    assert {job["id"] for job in listed} == {alices, daves}
    assert {job["created_by"] for job in listed} == {"alice@alpha", "dave@alpha"}
    filtered = client.get("/v1/jobs", headers=root, params={"created_by": "dave@alpha"}).json()
    assert [job["id"] for job in filtered["items"]] == [daves]
    stats = client.get("/v1/jobs/stats", headers=root).json()
    assert stats["states"]["FAILED"] == 1
    assert stats["states"]["SUCCEEDED"] == 1
    dlq = client.get("/v1/jobs/stats", headers=root, params={"created_by": "dave@alpha"}).json()
    assert dlq["dlq_depth"] == 0
    assert client.get(f"/v1/jobs/{alices}", headers=root).status_code == 200

    # The admin takes alice's dead letter back: it is the admin's job from now on.
    retried = client.post(f"/v1/jobs/{alices}/retry", headers=root)
    assert retried.status_code == 200, retried.text
    assert retried.json()["created_by"] == "root@alpha"
    assert client.get(f"/v1/jobs/{alices}", headers=alice).status_code == 404
    assert wait_for_job(client, alices, root)["state"] == "FAILED"


def test_bulk_retry_takes_only_the_callers_own_dead_letters(client: TestClient, as_: Any) -> None:
    alice, dave = as_("t-alpha", "alice@alpha"), as_("t-alpha", "dave@alpha")
    alices = dead_letter(client, alice, 3)
    daves = dead_letter(client, dave, 4)

    response = client.post("/v1/jobs/retry", headers=alice, json={})
    assert response.status_code == 200
    assert response.json()["retried"] == [alices]
    assert client.get(f"/v1/jobs/{daves}", headers=dave).json()["state"] == "FAILED"
    wait_for_job(client, alices, alice)


def test_a_duplicate_upload_shows_the_latest_job_only_to_whom_may_read_it(
    client: TestClient, as_: Any
) -> None:
    alice, dave = as_("t-alpha", "alice@alpha"), as_("t-alpha", "dave@alpha")
    root = as_("t-alpha", "root@alpha", Role.ADMIN)
    first = upload(client, alice, b"The same bytes, sent by two subjects.")
    wait_for_job(client, first["job"]["id"], alice)

    def again(headers: dict[str, str]) -> Any:
        files = {"file": ("a.txt", b"The same bytes, sent by two subjects.", "text/plain")}
        response = client.post("/v1/documents", headers=headers, files=files)
        assert response.status_code == 200
        assert response.json()["duplicate"] is True
        return response.json()

    assert again(dave)["job"] is None
    assert again(alice)["job"]["id"] == first["job"]["id"]
    assert again(root)["job"]["id"] == first["job"]["id"]
    reprocessed = client.post(
        "/v1/documents",
        headers=dave,
        params={"reprocess": "true"},
        files={"file": ("a.txt", b"The same bytes, sent by two subjects.", "text/plain")},
    )
    assert reprocessed.status_code == 202
    assert reprocessed.json()["job"]["created_by"] == "dave@alpha"
