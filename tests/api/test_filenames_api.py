"""An upload's file name is data, never a path.

The names are sent in hand-written multipart bodies, byte for byte: standard clients
percent-encode control characters, an attacker does not. Whatever the name, no file is
made outside the blob store, blobs are named by their content's hash alone, the stored
name is the sent one without control and bidi characters and cut to 255, and the
default title is its base name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conftest import AuthFactory
from spine.api.app import create_app
from spine.service.container import Services

BOUNDARY = "spine-test-boundary"
#: Where the traversal names would land if they were used as paths: only checked, never written.
ESCAPE_TARGETS = ("/tmp/spine-escape.txt", "/etc/win.ini")  # noqa: S108
LONG_STEM = "n" * 4000  # arrives: under the multipart parser's 4 KiB header line limit

# (name sent, filename stored, title given)
CASES = [
    ("../../etc/passwd", "../../etc/passwd", "passwd"),
    ("/abs/path.txt", "/abs/path.txt", "path.txt"),
    ("..\\..\\win.ini", "..\\..\\win.ini", "win.ini"),
    ("../../../../../../tmp/spine-escape.txt", "../../../../../../tmp/spine-escape.txt",
     "spine-escape.txt"),
    ("a\x00b.txt", "ab.txt", "ab.txt"),
    ("line\nbreak.txt", "linebreak.txt", "linebreak.txt"),
    ("tab\tand\x1b[31mred.txt", "taband[31mred.txt", "taband[31mred.txt"),
    ("invoice\u202egpj.exe", "invoicegpj.exe", "invoicegpj.exe"),
    ("\u2066iso\u2069late.txt", "isolate.txt", "isolate.txt"),
    ("para\u2029graph.txt", "paragraph.txt", "paragraph.txt"),
    ('quo"te.txt', 'quo"te.txt', 'quo"te.txt'),
    ("résumé 2024 ✓.txt", "résumé 2024 ✓.txt", "résumé 2024 ✓.txt"),
    ("..", "..", "untitled"),
    ("dir/", "dir/", "dir"),
    ("\x00\n\u202e", None, "untitled"),
    (LONG_STEM + ".md", "n" * 252 + ".md", "n" * 252 + ".md"),
]  # fmt: skip


def multipart(filename_bytes: bytes, content: bytes) -> bytes:
    return (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + filename_bytes
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def quoted(name: str) -> bytes:
    """The name as a quoted-string parameter: only backslash and quote are escaped."""
    return name.replace("\\", "\\\\").replace('"', '\\"').encode()


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's working directory, deep inside the test's folder: a name used as a
    relative path would land somewhere under ``tmp_path``, where the test looks."""
    cwd = tmp_path / "cwd" / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def client(services: Services, workdir: Path) -> Iterator[TestClient]:
    services.settings.workers = 0
    with TestClient(create_app(services=services), raise_server_exceptions=False) as test_client:
        yield test_client


def upload(client: TestClient, auth: AuthFactory, filename: bytes, content: bytes):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/documents",
        headers=auth() | {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        content=multipart(filename, content),
    )


@pytest.mark.parametrize(("sent", "stored", "title"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_a_hostile_name_is_stored_as_data_and_names_no_file(
    client: TestClient,
    auth: AuthFactory,
    services: Services,
    tmp_path: Path,
    sent: str,
    stored: str | None,
    title: str,
) -> None:
    content = f"the bytes sent as {sent!r}".encode()
    sha256 = hashlib.sha256(content).hexdigest()
    before = files_under(tmp_path)
    outside_before = {p for p in ESCAPE_TARGETS if os.path.exists(p)}

    answer = upload(client, auth, quoted(sent), content)

    assert answer.status_code == 202, answer.text
    document = answer.json()["document"]
    assert document["title"] == title
    assert document["sha256"] == sha256
    with services.db.read() as uow:
        assert uow.documents.get("acme", document["id"]).filename == stored

    blobs = services.blobs.root  # type: ignore[attr-defined]
    new_files = files_under(tmp_path) - before
    tenant_dir = blobs / services.blobs.tenant_key("acme")
    assert {p for p in new_files if p.is_relative_to(blobs)} == {tenant_dir / sha256[:2] / sha256}
    # Apart from the blob, only the database's own files may appear.
    assert all(
        p.parent == services.settings.data_dir and p.name.startswith("spine.db")
        for p in new_files
        if not p.is_relative_to(blobs)
    ), new_files
    assert {p for p in ESCAPE_TARGETS if os.path.exists(p)} == outside_before


def test_every_blob_is_named_by_its_hash_after_many_hostile_names(
    client: TestClient, auth: AuthFactory, services: Services
) -> None:
    expected = set()
    for i, (sent, _, _) in enumerate(CASES):
        content = f"document {i}".encode()
        assert upload(client, auth, quoted(sent), content).status_code == 202
        expected.add(hashlib.sha256(content).hexdigest())

    blobs = services.blobs.root  # type: ignore[attr-defined]
    stored = files_under(blobs)
    assert {p.name for p in stored} == expected
    for path in stored:
        assert path.parent.name == path.name[:2]
        assert path.parent.parent.parent == blobs
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


@pytest.mark.parametrize(
    "filename",
    [b"x" * 10_000 + b".txt", b"carriage\rreturn.txt"],
    ids=["10,000 characters", "bare CR"],
)
def test_a_name_the_multipart_parser_refuses_is_a_400_problem(
    client: TestClient, auth: AuthFactory, services: Services, filename: bytes
) -> None:
    answer = upload(client, auth, filename, b"never stored")

    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert list(services.blobs.list_blobs()) == []
    with services.db.read() as uow:
        assert uow.documents.list("acme", limit=10, after=None) == []
