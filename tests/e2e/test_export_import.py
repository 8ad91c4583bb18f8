"""Moving between modes: embedded -> scale-out -> embedded, through `spine export` and
`spine import` processes, with documents processed by the real pipeline.

Not parametrized by the suite's ``backend``: the source is always the embedded default
(``backend`` below), the middle hop is PostgreSQL + S3 + Redis of this test's own, and
the last hop is a fresh embedded data dir. Every hop's manifest must carry the same
counts and checksums, every import must verify against the target, and search must find
the same documents for the same queries.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TEST_SECRET, AuthFactory
from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.domain.auth import Role
from spine.domain.search import SearchMode
from spine.service import privacy
from spine.service.bootstrap import bootstrap
from spine.service.container import Services
from spine.service.search import search
from spine.settings import Settings
from support.api import wait_for_job

EMAIL = "rosalind.finch@example.org"
FILLER = (
    "Spine keeps documents of many kinds and finds them again when people ask. This "
    "paragraph gives each document some ordinary text around the words that identify it."
)
DOCUMENTS = {
    "acme": {
        "heron.txt": "The grey heron colony nests by the weir below the old mill.",
        "kiln.md": "# Kiln log\n\nThe pottery kiln reached cone ten on the third firing.",
        "letter.txt": f"Write to {EMAIL} about the lighthouse keeper's logbook.",
        "page.html": "<html><body><p>Tangerine observatory visiting hours.</p></body></html>",
    },
    "globex": {
        "memo.txt": "The submarine cable repair crew sails on Thursday from Falmouth.",
        "notes.md": "# Notes\n\nWalrus choir rehearsal minutes, second draft.",
    },
}
QUERIES = {
    "acme": ["grey heron colony", "pottery kiln firing", "lighthouse logbook", EMAIL],
    "globex": ["submarine cable repair", "walrus choir"],
}
SPINE = [sys.executable, "-m", "spine"]
STORE_VARIABLES = ("DATABASE_URL", "BLOB_URL", "REDIS_URL", "REDIS_NAMESPACE", "MASTER_KEY")


@pytest.fixture
def backend() -> str:
    """The source is the embedded default; the scale-out stores are built below."""
    return "embedded"


@pytest.fixture
def source(client: TestClient, auth: AuthFactory, services: Services) -> Services:
    """Every document uploaded through HTTP and processed by the app's worker."""
    for tenant, files in DOCUMENTS.items():
        headers = auth(tenant, Role.ADMIN)
        if tenant == "acme":
            policy = {"actions": {"PHONE": "redact"}, "custom": []}
            answer = client.put("/v1/privacy/policy", headers=headers, json=policy)
            assert answer.status_code == 200, answer.text
        for name, body in files.items():
            answer = client.post(
                "/v1/documents",
                headers=headers,
                files={"file": (name, f"{FILLER}\n\n{body}".encode(), None)},
            )
            assert answer.status_code == 202, answer.text
            job = wait_for_job(client, answer.json()["job"]["id"], headers)
            assert job["state"] == "SUCCEEDED", job
    return services


@pytest.fixture
def master_key(source: Services) -> str:
    """The source's generated master key: every hop must hold it."""
    return (source.settings.data_dir / "master-key").read_text().strip()


@pytest.fixture
def scale_out(
    postgres_url: str, s3_bucket_url: str, redis_url: str, master_key: str, tmp_path: Path
) -> dict[str, str]:
    return {
        "database_url": postgres_url,
        "blob_url": s3_bucket_url,
        "redis_url": redis_url,
        "redis_namespace": f"spine-test-{secrets.token_hex(6)}",
        "master_key": master_key,
        "jwt_secret": TEST_SECRET,
        "data_dir": str(tmp_path / "scale-out"),
    }


def spine(stores: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m spine ARGS`` on ``stores`` only: none of this process's store settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.removeprefix("SPINE_") not in STORE_VARIABLES
    }
    env.update({f"SPINE_{key.upper()}": value for key, value in stores.items()})
    env["COLUMNS"] = "200"
    return subprocess.run(
        [*SPINE, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def kinds(out: Path) -> dict[str, Any]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {entry["tenant"]: entry["kinds"] for entry in manifest["tenants"]}


@pytest.fixture
def open_services(embedder: MiniLMOnnxEmbedder) -> Iterator[Any]:
    opened: list[Services] = []

    def open_(stores: dict[str, str]) -> Services:
        built = bootstrap(Settings(**stores), embedder=embedder)  # type: ignore[arg-type]
        opened.append(built)
        return built

    yield open_
    for built in opened:
        built.close()


def answers(services: Services, mode: SearchMode) -> dict[tuple[str, str], list[str]]:
    return {
        (tenant, query): [
            hit.document_id for hit in search(services, tenant, query, mode=mode, k=10).hits
        ]
        for tenant, queries in QUERIES.items()
        for query in queries
    }


def test_embedded_to_scale_out_and_back_keeps_everything_and_searches_alike(
    source: Services,
    scale_out: dict[str, str],
    master_key: str,
    open_services: Any,
    tmp_path: Path,
) -> None:
    embedded = {"data_dir": str(source.settings.data_dir)}
    back = {"data_dir": str(tmp_path / "back"), "master_key": master_key}
    one, two = tmp_path / "export-1", tmp_path / "export-2"

    exported = succeeded(spine(embedded, "export", "--out", str(one)))
    assert "2 tenant(s)" in exported
    counted = kinds(one)
    assert {tenant: k["documents"]["count"] for tenant, k in counted.items()} == {
        "acme": 4,
        "globex": 2,
    }
    assert counted["acme"]["vault"]["count"] == 1
    assert counted["acme"]["audit"]["count"] >= 4  # the uploads and the policy change

    imported = succeeded(spine(scale_out, "import", str(one)))
    assert "counts and checksums match" in imported
    assert "MISMATCH" not in imported
    succeeded(spine(scale_out, "audit", "verify"))

    # Search on the scale-out stores finds the same documents.
    middle = open_services(scale_out)
    before_hybrid = answers(source, SearchMode.HYBRID)
    middle_hybrid = answers(middle, SearchMode.HYBRID)
    for key, documents in before_hybrid.items():
        assert documents, key
        assert middle_hybrid[key][0] == documents[0], key
    assert answers(middle, SearchMode.SEMANTIC) == answers(source, SearchMode.SEMANTIC)

    succeeded(spine(scale_out, "export", "--out", str(two)))
    assert kinds(two) == counted
    imported = succeeded(spine(back, "import", str(two)))
    assert "counts and checksums match" in imported
    succeeded(spine(back, "audit", "verify"))

    final = open_services(back)
    assert answers(final, SearchMode.HYBRID) == before_hybrid
    letter = before_hybrid[("acme", EMAIL)][0]
    revealed = privacy.document_text(final, "acme", letter, reveal=True)
    assert EMAIL in revealed.text


def test_import_refuses_a_tenant_the_target_has_and_another_master_key(
    source: Services, scale_out: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "export"
    succeeded(spine({"data_dir": str(source.settings.data_dir)}, "export", "--out", str(out)))
    succeeded(spine(scale_out, "import", str(out), "--tenant", "globex"))

    again = spine(scale_out, "import", str(out))
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "spine: tenant 'globex' already has documents in the target; import does not merge: "
        "delete them first, or leave the tenant out with --tenant"
    ]

    other_key = {**scale_out, "master_key": "A" * 43 + "="}
    refused = spine(other_key, "import", str(out), "--tenant", "acme")
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "SPINE_MASTER_KEY" in refused.stderr
