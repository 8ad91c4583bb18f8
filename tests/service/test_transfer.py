"""Export and import through the ports, on real SQLite stores with the real pipeline.

The source is the ``services`` fixture (SQLite and a folder of blobs); each target is a
second embedded data dir with the source's master key. Every test names what the move
must keep, or what it must refuse.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import TEST_SECRET
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.domain.jobs import JobState
from spine.domain.privacy import PiiAction, PiiPolicy
from spine.domain.search import SearchMode
from spine.queue.worker import claim_next
from spine.service import audit, documents, privacy, processing
from spine.service.audit import AuditEvent
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.service.keyring import MasterKey
from spine.service.search import search
from spine.service.transfer import (
    MANIFEST,
    Kind,
    TransferRefused,
    export_tenants,
    import_tenants,
    verify_import,
)
from spine.settings import Settings
from support.rows import unscoped

NOW = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
EMAIL = "jane.doe@example.com"
FILLER = (
    "The quarterly review covered the orchard irrigation budget, the volunteer rota for "
    "the harvest festival and the repairs to the old cider press in the north barn. "
)
ACME = {
    "heron.md": f"# Heron survey\n\n{FILLER}\n\nThe grey heron colony nests by the weir.",
    "letter.md": f"# Letter\n\nPlease write to {EMAIL} about the lighthouse keeper's logbook.",
    "kiln.txt": f"{FILLER * 4}\n\nThe pottery kiln reached cone ten on the third firing.",
}
GLOBEX = {"memo.txt": "The submarine cable repair crew sails on Thursday from Falmouth."}
QUERIES = ("grey heron colony", "lighthouse keeper logbook", "pottery kiln firing")


def drain(services: Services) -> None:
    while (job := claim_next(services, "test-worker")) is not None:
        assert processing.process(services, job) is JobState.SUCCEEDED


def upload(services: Services, tenant: str, name: str, body: str) -> str:
    accepted = documents.upload(
        services,
        tenant,
        documents.Upload(io.BytesIO(body.encode()), name, None, None, {"source": name}),
        subject="alice",
    )
    return accepted.document.id


@pytest.fixture
def source(services: Services) -> Services:
    """acme: three processed documents (one with an e-mail address in the vault), a PII
    policy and an audit chain; globex: one document."""
    privacy.set_policy(services, "acme", PiiPolicy({"PHONE": PiiAction.REDACT}), actor="admin")
    for tenant, files in (("acme", ACME), ("globex", GLOBEX)):
        for name, body in files.items():
            upload(services, tenant, name, body)
    drain(services)
    with services.db.write() as uow:
        events = [
            AuditEvent("alice", "document.upload", f"doc_{n}", f"r{n}", "success") for n in range(3)
        ]
        audit.append(uow, "acme", events, at=NOW)
    return services


def master_key_of(services: Services) -> str:
    return (services.settings.data_dir / "master-key").read_text().strip()


@pytest.fixture
def target(tmp_path: Path, source: Services, embedder: MiniLMOnnxEmbedder) -> Iterator[Services]:
    """Another embedded data dir, holding the source's master key."""
    settings = Settings(
        jwt_secret=TEST_SECRET,
        master_key=master_key_of(source),
        data_dir=tmp_path / "target",
        workers=1,
    )
    built = bootstrap(settings, embedder=embedder)
    yield built
    built.close()


def export(source: Services, out: Path, tenants: list[str] | None = None) -> dict[str, Any]:
    return export_tenants(
        source.db,
        source.blobs,
        out,
        tenants,
        now=NOW,
        spine_version="test",
        schema_revision="test",
        source={"database": "sqlite", "blob_store": "file"},
    )


def import_into(target: Services, src: Path, tenants: list[str] | None = None) -> Any:
    return import_tenants(
        target.db,
        target.blobs,
        src,
        tenants,
        master_key_id=target.keyring.master_key_id,
        now=NOW,
    )


def hits(services: Services, tenant: str, query: str) -> list[tuple[str, str]]:
    result = search(services, tenant, query, mode=SearchMode.HYBRID, k=5)
    return [(hit.document_id, hit.chunk_id) for hit in result.hits]


def document_ids(services: Services, tenant: str) -> list[str]:
    with services.db.read() as uow:
        return [d.id for d in uow.documents.list(tenant, limit=100, after=None)]


def test_one_tenant_moves_with_every_kind_and_searches_alike(
    source: Services, target: Services, tmp_path: Path
) -> None:
    manifest = export(source, tmp_path / "out", ["acme"])
    kinds = manifest["tenants"][0]["kinds"]
    assert [entry["tenant"] for entry in manifest["tenants"]] == ["acme"]
    assert kinds["documents"]["count"] == 3
    assert kinds["blobs"]["count"] == 3
    assert kinds["jobs"]["count"] == 3
    assert kinds["audit"]["count"] == 3
    assert kinds["vault"]["count"] >= 1
    assert kinds["chunks"]["count"] >= 3
    assert {kinds[k]["count"] for k in ("audit_head", "policy", "keys")} == {1}

    report = import_into(target, tmp_path / "out")

    assert report.ok, [c for c in report.checks if not c.ok]
    assert len(report.checks) == len(Kind)
    assert document_ids(target, "acme") == document_ids(source, "acme")
    assert document_ids(target, "globex") == []
    for query in QUERIES:
        assert hits(target, "acme", query) == hits(source, "acme", query), query
    # A search by the value finds it through the same token key, and the vault opens.
    assert hits(target, "acme", EMAIL) == hits(source, "acme", EMAIL) != []
    letter = hits(source, "acme", EMAIL)[0][0]
    revealed = privacy.document_text(target, "acme", letter, reveal=True)
    assert EMAIL in revealed.text
    assert revealed.unrevealed_tokens == 0
    with source.db.read() as before, target.db.read() as after:
        for document_id in document_ids(source, "acme"):
            assert after.index.chunks_with_vectors(
                "acme", document_id
            ) == before.index.chunks_with_vectors("acme", document_id)
            assert after.documents.get("acme", document_id) == before.documents.get(
                "acme", document_id
            )
        for job in before.jobs.list("acme", state=None, limit=10, after=None):
            assert after.jobs.get("acme", job.id) == before.jobs.get("acme", job.id)
        assert after.privacy.policy("acme") == before.privacy.policy("acme")
    assert [r.ok for r in audit.verify(target.db)] == [True]


def test_everything_moves_and_unfinished_jobs_are_counted_not_exported(
    source: Services, target: Services, tmp_path: Path
) -> None:
    waiting = upload(source, "globex", "late.txt", "A document still waiting in the queue.")

    manifest = export(source, tmp_path / "out")

    by_tenant = {entry["tenant"]: entry for entry in manifest["tenants"]}
    assert sorted(by_tenant) == ["acme", "globex"]
    assert manifest["unfinished_jobs_skipped"] == 1
    assert by_tenant["globex"]["unfinished_jobs_skipped"] == 1
    assert by_tenant["globex"]["kinds"]["jobs"]["count"] == 1
    assert by_tenant["globex"]["kinds"]["documents"]["count"] == 2
    assert "PENDING" in manifest["note"]

    report = import_into(target, tmp_path / "out")

    assert report.ok
    assert {c.tenant_id for c in report.checks} == {"acme", "globex"}
    with target.db.read() as uow:
        # The waiting document arrives as never processed, its job left behind.
        moved = uow.documents.get("globex", waiting)
        assert (moved.latest_job_id, moved.status, moved.chunk_count) == (None, None, 0)
        assert sum(uow.jobs.count_by_state("globex").values()) == 1
    assert hits(target, "globex", "submarine cable") == hits(source, "globex", "submarine cable")


def test_counts_and_checksums_are_the_same_after_a_second_hop(
    source: Services, target: Services, tmp_path: Path
) -> None:
    first = export(source, tmp_path / "one")
    import_into(target, tmp_path / "one")
    second = export(target, tmp_path / "two")
    assert [t["kinds"] for t in second["tenants"]] == [t["kinds"] for t in first["tenants"]]


def edit_first_line(path: Path, key: str, value: Any) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[0])
    record[key] = value
    lines[0] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))


def test_a_changed_export_file_is_caught_by_its_checksum_before_anything_is_written(
    source: Services, target: Services, tmp_path: Path
) -> None:
    export(source, tmp_path / "out", ["acme"])
    edit_first_line(tmp_path / "out/tenants/acme/chunks.jsonl", "text", "planted words")

    with pytest.raises(
        TransferRefused, match=r"chunks\.jsonl does not match its count and checksum"
    ):
        import_into(target, tmp_path / "out")
    assert document_ids(target, "acme") == []


def test_a_changed_blob_is_caught_by_its_hash(
    source: Services, target: Services, tmp_path: Path
) -> None:
    export(source, tmp_path / "out", ["acme"])
    blob = next((tmp_path / "out/tenants/acme/blobs").iterdir())
    blob.write_bytes(blob.read_bytes() + b" and one planted sentence.")

    with pytest.raises(TransferRefused, match="does not hash to its name"):
        import_into(target, tmp_path / "out")
    assert document_ids(target, "acme") == []


def test_another_master_key_is_refused_in_one_line(
    source: Services, target: Services, tmp_path: Path
) -> None:
    export(source, tmp_path / "out", ["acme"])
    other = MasterKey.of(os.urandom(32)).key_id

    with pytest.raises(TransferRefused, match="SPINE_MASTER_KEY") as refused:
        import_tenants(target.db, target.blobs, tmp_path / "out", master_key_id=other, now=NOW)
    assert "\n" not in refused.value.message
    assert source.keyring.master_key_id in refused.value.message
    assert document_ids(target, "acme") == []


def test_a_tenant_the_target_already_has_is_refused(
    source: Services, target: Services, tmp_path: Path
) -> None:
    export(source, tmp_path / "out")
    assert import_into(target, tmp_path / "out", ["acme"]).ok

    with pytest.raises(TransferRefused, match="'acme' already has documents in the target"):
        import_into(target, tmp_path / "out")
    # Refused as a whole: globex, which the target did not have, was not written either.
    assert document_ids(target, "globex") == []
    assert import_into(target, tmp_path / "out", ["globex"]).ok


def test_verification_reads_the_target_and_names_what_differs(
    source: Services, target: Services, tmp_path: Path
) -> None:
    export(source, tmp_path / "out", ["acme"])
    assert import_into(target, tmp_path / "out").ok
    with target.db.write() as uow:
        unscoped(uow).execute(text("UPDATE chunks SET text = 'changed' WHERE ordinal = 0"))
    blob = next(p for p in (target.settings.data_dir / "blobs").rglob("*") if p.is_file())
    blob.write_bytes(b"damaged")
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())

    report = verify_import(target.db, target.blobs, manifest["tenants"])

    assert not report.ok
    assert sorted(c.kind for c in report.checks if not c.ok) == ["blobs", "chunks"]


def test_vectors_travel_as_little_endian_float32(source: Services, tmp_path: Path) -> None:
    export(source, tmp_path / "out", ["globex"])
    record = json.loads((tmp_path / "out/tenants/globex/chunks.jsonl").read_text().splitlines()[0])
    assert len(base64.b64decode(record["vector"])) == 4 * source.embedder.dimension


def test_export_refuses_a_folder_that_is_not_empty(source: Services, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(TransferRefused, match="not an empty folder"):
        export(source, tmp_path / "out")
