"""SqlPrivacyRepository on real SQLite: keys, policies, the vault, and what forget needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spine.domain.documents import Chunk
from spine.domain.privacy import CustomPattern, PiiAction, PiiPolicy
from spine.ports import Database, StoredResponse, VaultEntry, WrappedTenantKeys
from support.rows import document_row, unscoped

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)


def add_document(
    db: Database,
    tenant: str,
    document_id: str,
    text: str = "",
    title: str = "t",
    filename: str | None = None,
) -> None:
    with db.write() as uow:
        uow.documents.add(
            tenant,
            document_row(tenant, document_id, title=title, filename=filename, at=NOW),
        )
        if text:
            chunk = Chunk(f"chk_{document_id}", document_id, 0, text, 0, len(text), [0.1] * 384)
            uow.index.replace(tenant, document_id, title, [chunk])


def entry(token: str, kind: str = "EMAIL") -> VaultEntry:
    return VaultEntry(token=token, kind=kind, nonce=b"n" * 12, ciphertext=b"c" * 20)


def keys(marker: bytes) -> WrappedTenantKeys:
    return WrappedTenantKeys("mk1", marker * 60, marker * 60, NOW)


def test_the_first_tenant_keys_win_and_others_are_ignored(db: Database) -> None:
    with db.write() as uow:
        assert uow.privacy.tenant_keys("acme") is None
        uow.privacy.add_tenant_keys("acme", keys(b"a"))
        uow.privacy.add_tenant_keys("acme", keys(b"b"))  # a racing second creator
        uow.privacy.add_tenant_keys("rival", keys(b"r"))
    with db.read() as uow:
        acme = uow.privacy.tenant_keys("acme")
        rival = uow.privacy.tenant_keys("rival")
    assert acme is not None
    assert acme.wrapped_data_key == b"a" * 60
    assert acme.master_key_id == "mk1"
    assert rival is not None
    assert rival.wrapped_token_key == b"r" * 60


def test_a_policy_round_trips_and_is_replaced_whole(db: Database) -> None:
    policy = PiiPolicy(
        actions={"EMAIL": PiiAction.REDACT, "PHONE": PiiAction.KEEP},
        custom=(CustomPattern("EMPLOYEE_ID", r"E-\d{5}"),),
    )
    with db.write() as uow:
        assert uow.privacy.policy("acme") is None
        uow.privacy.set_policy("acme", policy, now=NOW, updated_by="alice")
    with db.read() as uow:
        stored = uow.privacy.policy("acme")
        assert uow.privacy.policy("rival") is None
    assert stored is not None
    assert stored.policy == policy
    assert (stored.updated_at, stored.updated_by) == (NOW, "alice")
    with db.write() as uow:
        uow.privacy.set_policy("acme", PiiPolicy(), now=NOW, updated_by="bob")
    with db.read() as uow:
        again = uow.privacy.policy("acme")
    assert again is not None
    assert again.policy == PiiPolicy()
    assert again.updated_by == "bob"


def test_replacing_a_documents_vault_never_adds_to_it(db: Database) -> None:
    add_document(db, "acme", "doc_a")
    with db.write() as uow:
        uow.privacy.replace_vault("acme", "doc_a", [entry("<EMAIL:aaaaaaaaaaaa>")], now=NOW)
    with db.write() as uow:  # a retried job writes its own entries again
        uow.privacy.replace_vault(
            "acme",
            "doc_a",
            [entry("<EMAIL:aaaaaaaaaaaa>"), entry("<PHONE:bbbbbbbbbbbb>", "PHONE")],
            now=NOW,
        )
    with db.read() as uow:
        tokens = [e.token for e in uow.privacy.vault("acme", "doc_a")]
        assert uow.privacy.vault("rival", "doc_a") == []
    assert tokens == ["<EMAIL:aaaaaaaaaaaa>", "<PHONE:bbbbbbbbbbbb>"]


def test_finding_and_forgetting_tokens_stays_in_the_tenant(db: Database) -> None:
    token = "<EMAIL:aaaaaaaaaaaa>"
    for tenant, document_id in (("acme", "doc_1"), ("acme", "doc_2"), ("rival", "doc_3")):
        add_document(db, tenant, document_id)
        with db.write() as uow:
            uow.privacy.replace_vault(tenant, document_id, [entry(token)], now=NOW)
    with db.write() as uow:
        uow.privacy.replace_vault(
            "acme", "doc_2", [entry(token), entry("<EMAIL:cccccccccccc>")], now=NOW
        )
    with db.read() as uow:
        assert uow.privacy.documents_with_tokens("acme", [token]) == {"doc_1": 1, "doc_2": 1}
        assert uow.privacy.documents_with_tokens("acme", []) == {}
    with db.write() as uow:
        assert uow.privacy.forget_tokens("acme", [token]) == 2
    with db.read() as uow:
        assert uow.privacy.documents_with_tokens("acme", [token]) == {}
        assert [e.token for e in uow.privacy.vault("acme", "doc_2")] == ["<EMAIL:cccccccccccc>"]
        assert uow.privacy.documents_with_tokens("rival", [token]) == {"doc_3": 1}
    with db.write() as uow:
        assert uow.privacy.delete_vault("acme", "doc_2") == 1
        assert uow.privacy.delete_vault("acme", "doc_3") == 0  # rival's document


def test_documents_containing_a_literal_value(db: Database) -> None:
    add_document(db, "acme", "doc_1", "Write to Jane.Doe@Example.com today.")
    add_document(db, "acme", "doc_2", "Nothing here but 100% of_underscores.")
    add_document(db, "acme", "doc_3", "text", title="Notes for jane.doe@example.com")
    add_document(db, "rival", "doc_4", "Write to jane.doe@example.com too.")
    add_document(db, "acme", "doc_5", "text", filename="from-JANE.DOE@example.com.txt")
    with db.read() as uow:
        found = uow.privacy.documents_containing("acme", ["jane.doe@example.com"])
        # LIKE would take % and _ as wildcards ("j_ne" would match "Jane"); they are literal.
        assert uow.privacy.documents_containing("acme", ["j_ne"]) == []
        assert uow.privacy.documents_containing("acme", ["%"]) == ["doc_2"]
        assert uow.privacy.documents_containing("acme", []) == []
    assert found == ["doc_1", "doc_3", "doc_5"]


def test_stored_responses_that_quote_a_document_are_dropped(db: Database) -> None:
    with db.write() as uow:
        for key, body in (
            ("k1", '{"document": {"id": "doc_1", "title": "Jane secret plan"}}'),
            ("k2", '{"document": {"id": "doc_2"}}'),
        ):
            uow.idempotency.begin("acme", key, fingerprint="f", now=NOW, ttl=HOUR, lock=HOUR)
            uow.idempotency.complete("acme", key, StoredResponse(202, body, {}))
        uow.idempotency.begin("rival", "k1", fingerprint="f", now=NOW, ttl=HOUR, lock=HOUR)
        uow.idempotency.complete(
            "rival", "k1", StoredResponse(202, '{"document": {"id": "doc_1"}}', {})
        )
    with db.write() as uow:
        assert uow.privacy.forget_responses_mentioning("acme", "doc_1") == 1
        assert uow.privacy.forget_responses_mentioning("acme", "") == 0
    with db.read() as uow:
        conn = unscoped(uow)
        rows = conn.exec_driver_sql(
            "SELECT tenant_id, key FROM idempotency_keys ORDER BY tenant_id, key"
        ).all()
    assert [tuple(r) for r in rows] == [("acme", "k2"), ("rival", "k1")]
