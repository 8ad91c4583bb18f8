"""Deleting a document, or forgetting a value, leaves no byte of it on disk.

Three documents go in through the API and are processed by the real worker: one to
delete, one to forget a value in, one to keep. Then every file under the data dir (the
database, its -wal and -shm, the blobs, the generated secrets) is read byte for byte and
searched, case-insensitively, in UTF-8 and UTF-16, for the deleted document's unique
words (as FTS5 keeps them: whole terms), its sentence, title, file name, personal data
(as written and canonical), its chunk vectors, and the forgotten value.

Before deleting, the same scan must find every one of those needles: the scan can see
them, so not finding them afterwards means they are gone. After deleting, the kept
document's words must still be found: the scan still works.

Removing any one of these makes the test fail (checked by hand, see the report of the
change): ``PRAGMA secure_delete=ON`` (the deleted chunk text stays in free space inside
the database pages), FTS5's 'secure-delete' option (the deleted terms stay in the
full-text index segments), the WAL checkpoint with TRUNCATE after a delete (the page
images from before it stay in -wal), the purge of stored idempotency responses (the
upload's response quotes the title and file name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.domain.auth import Role
from spine.service.container import Services
from spine.settings import Settings
from support.api import wait_for_job

# Words no other text here has, of consonants only: Porter stemming leaves them whole, so
# the full-text index holds them as they are.
DELETED_WORDS = ("zqxvbrtkwp", "hjvkqzwmpt", "xkcdvqzrwn")
DELETED_SENTENCE = f"The {DELETED_WORDS[0]} ledger lists the {DELETED_WORDS[1]} accounts."
DELETED_TITLE_WORD = "qzxwvtitlq"
DELETED_FILENAME = "wqzvxfilenm-notes.txt"
DELETED_PII = {
    # as written in the document -> canonical (what a token is made from)
    "della.deleted@example.net": "della.deleted@example.net",
    "(212) 555-0187": "+12125550187",
    "5555 5555 5555 4444": "5555555555554444",
    "GB82 WEST 1234 5698 7654 32": "GB82WEST12345698765432",
}
FORGOTTEN_EMAIL = "fiona.forgotten@example.org"
FORGOTTEN_WORD = "vzqkxplnrt"  # stays: only the e-mail address is forgotten
KEPT_WORD = "kqzvwxmrtp"

FILLER = (
    "This paragraph is ordinary text about budgets, schedules and the weather, so that "
    "every document is long enough to make more than one chunk when it is processed."
)


@pytest.fixture
def backend() -> str:
    """The embedded default only: this suite reads the stores' files byte for byte. On
    PostgreSQL a deleted row's bytes stay in its page until VACUUM and later writes reuse
    the space, and an S3 provider's disks are not ours to read: there, what deletion
    guarantees is checked through the stores' own interfaces
    (test_deletion_scale_out.py)."""
    return "embedded"


def deleted_body() -> str:
    pii = list(DELETED_PII)
    return (
        f"{DELETED_SENTENCE}\n\n{FILLER * 4}\n\n"
        f"Write to {pii[0]} or call {pii[1]}. The {DELETED_WORDS[2]} card is {pii[2]}; "
        f"the account is {pii[3]}.\n\n{FILLER * 4}\n\n{DELETED_SENTENCE}"
    )


def forgotten_body() -> str:
    return f"The {FORGOTTEN_WORD} memo goes to {FORGOTTEN_EMAIL} before Friday.\n\n{FILLER * 2}"


def kept_body() -> str:
    return f"The {KEPT_WORD} minutes were approved.\n\n{FILLER * 2}"


def forms(value: str) -> list[bytes]:
    lowered = value.lower()
    return [lowered.encode("utf-8"), lowered.encode("utf-16-le"), lowered.encode("utf-16-be")]


def scan(root: Path, needles: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Needle name -> the files (relative to ``root``) that hold any of its forms."""
    found: dict[str, list[str]] = {}
    files = [path for path in sorted(root.rglob("*")) if path.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        folded = data.lower()  # ASCII case folding: the needles are ASCII
        for name, variants in needles.items():
            if any(v in folded or v in data for v in variants):
                found.setdefault(name, []).append(str(path.relative_to(root)))
    return found


def upload(
    client: TestClient,
    headers: dict[str, str],
    body: str,
    name: str,
    *,
    title: str | None = None,
    key: str | None = None,
) -> str:
    response = client.post(
        "/v1/documents",
        headers={**headers, **({"Idempotency-Key": key} if key else {})},
        files={"file": (name, body.encode(), "text/plain")},
        data={"title": title} if title else {},
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job"]["id"], headers)
    assert job["state"] == "SUCCEEDED", job
    document_id: str = response.json()["document"]["id"]
    return document_id


def chunk_vectors(services: Services, document_id: str) -> list[bytes]:
    with services.db.read() as uow:
        conn: Any = uow.documents._conn  # the test reads the tables behind the repositories
        rows = conn.execute(
            text(
                "SELECT v.embedding FROM chunks c JOIN chunks_vec v ON v.rowid = c.seq "
                "WHERE c.document_id = :d"
            ),
            {"d": document_id},
        ).all()
    vectors = [bytes(row[0]) for row in rows]
    assert all(np.any(np.frombuffer(v, dtype=np.float32)) for v in vectors)
    return vectors


def test_deleting_and_forgetting_leave_no_trace_on_disk(
    client: TestClient, auth: AuthFactory, services: Services, settings: Settings
) -> None:
    writer = auth("acme")
    deleted = upload(
        client,
        writer,
        deleted_body(),
        DELETED_FILENAME,
        title=f"{DELETED_TITLE_WORD} for della.deleted@example.net",
        key="upload-the-deleted-one",
    )
    forgotten_in = upload(client, writer, forgotten_body(), "memo.txt")
    kept = upload(client, writer, kept_body(), "minutes.txt")
    vectors = chunk_vectors(services, deleted)
    assert len(vectors) >= 2

    gone: dict[str, list[bytes]] = {f"word {w}": forms(w) for w in DELETED_WORDS}
    gone["sentence"] = forms(DELETED_SENTENCE)
    gone["title word"] = forms(DELETED_TITLE_WORD)
    gone["file name"] = forms(DELETED_FILENAME)
    never: dict[str, list[bytes]] = {}  # canonical forms: only ever encrypted, in the vault
    for written, canonical in DELETED_PII.items():
        gone[f"pii {written}"] = forms(written)
        if canonical != written:
            never[f"pii canonical {canonical}"] = forms(canonical)
    for index, vector in enumerate(vectors):
        gone[f"vector {index}"] = [vector]
    gone["forgotten e-mail"] = forms(FORGOTTEN_EMAIL)
    stays = {"kept word": forms(KEPT_WORD), "forgotten doc's word": forms(FORGOTTEN_WORD)}
    data_dir = settings.data_dir

    before = scan(data_dir, {**gone, **stays, **never})
    assert set(before) == set(gone) | set(stays), before.keys() ^ (gone.keys() | stays.keys())
    # Personal data was only ever in the uploaded bytes (the e-mail address also in the
    # title the uploader gave, stored as given until processing scrubbed it).
    only_in_blobs = [f"pii {w}" for w in DELETED_PII if "@" not in w] + ["forgotten e-mail"]
    assert all(all(f.startswith("blobs/") for f in before[n]) for n in only_in_blobs), before
    assert any(f.startswith("spine.db") for f in before["word zqxvbrtkwp"]), before

    response = client.delete(f"/v1/documents/{deleted}", headers=writer)
    assert response.status_code == 204, response.text
    response = client.post(
        "/v1/privacy/forget",
        headers=auth("acme", Role.ADMIN),
        json={"value": FORGOTTEN_EMAIL, "delete_originals": True},
    )
    assert response.status_code == 200, response.text
    assert response.json()["documents_affected"] == [forgotten_in]

    after = scan(data_dir, {**gone, **stays, **never})
    left = {name: files for name, files in after.items() if name not in stays}
    assert left == {}, left
    # The scan still sees what should be there: in the database, not only in blobs.
    assert any(f.startswith("spine.db") for f in after["kept word"]), after
    assert any(f.startswith("spine.db") for f in after["forgotten doc's word"]), after
    assert client.get(f"/v1/documents/{kept}", headers=writer).status_code == 200


def test_without_delete_originals_a_forgotten_value_remains_only_in_its_upload(
    client: TestClient, auth: AuthFactory, settings: Settings
) -> None:
    """What the receipt's note says, checked: the vault and the index no longer hold the
    value, the uploaded bytes (never served) still do."""
    forgotten_in = upload(client, auth("acme"), forgotten_body(), "memo.txt")
    response = client.post(
        "/v1/privacy/forget", headers=auth("acme", Role.ADMIN), json={"value": FORGOTTEN_EMAIL}
    )
    assert response.json()["documents_affected"] == [forgotten_in]
    assert "remain in the blob store" in response.json()["note"]
    found = scan(settings.data_dir, {"forgotten e-mail": forms(FORGOTTEN_EMAIL)})
    assert len(found["forgotten e-mail"]) == 1
    assert found["forgotten e-mail"][0].startswith("blobs/")
