"""Personal data through the real pipeline: scrub at ingest, search by value, reveal, forget.

Real SQLite, the real model, real jobs run by the real processing code; the tests read the
tables behind the repositories to prove what is (and is not) stored.
"""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from spine.adapters.embedders.minilm_onnx import MiniLMOnnxEmbedder
from spine.adapters.sqlite.search_index import FTS_TABLE_PREFIX, fts_query
from spine.domain.documents import Chunk
from spine.domain.jobs import JobState
from spine.domain.privacy import TOKEN, CustomPattern, PiiAction, PiiPolicy
from spine.domain.search import SearchMode
from spine.errors import InvalidRequest, NotFound
from spine.queue.worker import claim_next
from spine.service import documents, privacy, processing
from spine.service.container import Services
from spine.service.search import search

EMAIL = "jane.doe@example.com"
OTHER_EMAIL = "john.roe@example.org"
PHONE = "(415) 555-0132"
PHONE_OTHER_FORMAT = "+1 415-555-0132"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
VALUES = (EMAIL, PHONE, CARD, IBAN)

FILLER = (
    "The quarterly review covered the orchard irrigation budget, the volunteer rota for "
    "the harvest festival and the repairs to the old cider press in the north barn. "
)


def letter(*, extra: str = "") -> str:
    return (
        f"# Account notes for {EMAIL}\n\n"
        f"{FILLER * 3}\n\n"
        f"Please reach Jane at {EMAIL} or call {PHONE}. {extra}\n\n"
        f"{FILLER * 6}\n\n"
        f"Refunds go to card {CARD} or the account {IBAN}.\n\n"
        f"{FILLER * 6}\n\n"
        f"Once more, write to {EMAIL.upper()} about the cider press."
    )


def drain(services: Services) -> None:
    while (job := claim_next(services, "test-worker")) is not None:
        assert processing.process(services, job) is JobState.SUCCEEDED


def ingest(
    services: Services,
    body: str,
    *,
    tenant: str = "acme",
    name: str = "notes.md",
    content_type: str = "text/markdown",
    title: str | None = None,
    reprocess: bool = False,
) -> str:
    accepted = documents.upload(
        services,
        tenant,
        documents.Upload(io.BytesIO(body.encode()), name, content_type, title, {}),
        reprocess=reprocess,
    )
    drain(services)
    return accepted.document.id


def sql(services: Services, statement: str, **params: Any) -> list[Any]:
    with services.db.read() as uow:
        conn = uow.documents._conn  # the test reads the tables behind the repositories
        return list(conn.execute(text(statement), params).all())


def stored_chunks(services: Services, tenant: str, document_id: str) -> list[Chunk]:
    with services.db.read() as uow:
        return uow.index.chunks(tenant, document_id)


def everything_stored_as_text(services: Services) -> str:
    """Every text the database keeps for search: chunks, the FTS5 copies, titles."""
    rows = sql(services, "SELECT text FROM chunks")
    # Every tenant's full-text table, not only acme's: nothing may be stored anywhere.
    fts_tables = sql(
        services,
        "SELECT name FROM sqlite_master WHERE substr(name, 1, :n) = :prefix "
        "AND sql LIKE 'CREATE VIRTUAL TABLE%'",
        n=len(FTS_TABLE_PREFIX),
        prefix=FTS_TABLE_PREFIX,
    )
    assert fts_tables, "the documents' text must be in some full-text table"
    for (table,) in fts_tables:
        rows += sql(services, f"SELECT title || ' ' || text FROM {table}")  # noqa: S608
    rows += sql(services, "SELECT title FROM documents")
    return "\n".join(row[0] for row in rows)


def set_policy(services: Services, policy: PiiPolicy, tenant: str = "acme") -> None:
    privacy.set_policy(services, tenant, policy, actor="test")


def keyword(services: Services, query: str, tenant: str = "acme") -> list[str]:
    result = search(services, tenant, query, mode=SearchMode.KEYWORD, k=10)
    return list(dict.fromkeys(hit.document_id for hit in result.hits))


# -- Ingest ---------------------------------------------------------------------------


def test_default_policy_tokenises_every_value_before_anything_is_stored(
    services: Services,
) -> None:
    document_id = ingest(services, letter())
    stored = everything_stored_as_text(services)
    for value in (*VALUES, EMAIL.upper(), "4111111111111111", "555-0132"):
        assert value.lower() not in stored.lower()
    keys = services.keyring.for_tenant("acme")
    email_token = keys.token_for("EMAIL", EMAIL)
    assert email_token in stored
    assert keys.token_for("PHONE", "+14155550132") in stored
    assert keys.token_for("CARD", "4111111111111111") in stored
    assert keys.token_for("IBAN", "DE89370400440532013000") in stored
    # The markdown heading became the title, scrubbed too.
    assert documents.get(services, "acme", document_id).title == f"Account notes for {email_token}"
    # One vault entry per distinct value (the upper-case address is the same value).
    with services.db.read() as uow:
        entries = uow.privacy.vault("acme", document_id)
    assert sorted(e.kind for e in entries) == ["CARD", "EMAIL", "IBAN", "PHONE"]
    assert all(v.encode() not in e.ciphertext for e in entries for v in VALUES)
    opened = {e.token: keys.open(document_id, e) for e in entries}
    assert opened[email_token] == EMAIL


def test_chunks_hold_scrubbed_text_and_their_vectors_embed_exactly_that(
    services: Services, embedder: MiniLMOnnxEmbedder
) -> None:
    document_id = ingest(services, letter())
    chunks = stored_chunks(services, "acme", document_id)
    assert len(chunks) > 1
    rows = sql(
        services,
        "SELECT c.id, v.embedding FROM chunks c JOIN chunks_vec v ON v.rowid = c.seq "
        "WHERE c.document_id = :d ORDER BY c.ordinal",
        d=document_id,
    )
    stored = {chunk_id: np.frombuffer(blob, dtype=np.float32) for chunk_id, blob in rows}
    expected = embedder.embed([chunk.text for chunk in chunks])
    with_token = 0
    for chunk, vector in zip(chunks, expected, strict=True):
        assert not any(value in chunk.text for value in VALUES)
        with_token += bool(TOKEN.search(chunk.text))
        np.testing.assert_allclose(stored[chunk.id], vector, atol=1e-5)
    assert with_token >= 2
    # The scrub made a difference the model can see: the raw text embeds elsewhere.
    raw_chunk = next(c for c in chunks if TOKEN.search(c.text))
    raw_text = TOKEN.sub(EMAIL, raw_chunk.text)
    assert not np.allclose(embedder.embed([raw_text])[0], stored[raw_chunk.id], atol=1e-3)


def test_a_retried_job_replaces_the_vault_instead_of_adding_to_it(services: Services) -> None:
    body = letter()
    document_id = ingest(services, body)
    before = sql(services, "SELECT token FROM pii_vault ORDER BY token")
    assert ingest(services, body, reprocess=True) == document_id
    after = sql(services, "SELECT token FROM pii_vault ORDER BY token")
    assert after == before
    assert len(after) == 4


def test_redact_policy_leaves_only_the_kind(services: Services) -> None:
    set_policy(services, PiiPolicy(actions={"EMAIL": PiiAction.REDACT}))
    document_id = ingest(services, letter())
    stored = everything_stored_as_text(services)
    assert EMAIL not in stored.lower()
    assert "[EMAIL]" in stored
    assert "<EMAIL:" not in stored
    assert "<PHONE:" in stored  # kinds not named are still tokenised
    with services.db.read() as uow:
        kinds = {e.kind for e in uow.privacy.vault("acme", document_id)}
    assert "EMAIL" not in kinds
    # A redacted value cannot be searched for: the query's [EMAIL] is not a search term.
    assert keyword(services, EMAIL) == []


def test_keep_policy_leaves_the_value_in_clear_and_searchable(services: Services) -> None:
    set_policy(services, PiiPolicy(actions={"PHONE": PiiAction.KEEP}))
    document_id = ingest(services, letter())
    stored = everything_stored_as_text(services)
    assert PHONE in stored
    assert EMAIL not in stored.lower()
    with services.db.read() as uow:
        assert "PHONE" not in {e.kind for e in uow.privacy.vault("acme", document_id)}
    assert keyword(services, PHONE) == [document_id]


def test_a_custom_pattern_is_detected_tokenised_searched_and_revealed(
    services: Services,
) -> None:
    set_policy(services, PiiPolicy(custom=(CustomPattern("EMPLOYEE_ID", r"EMP-\d{6}"),)))
    document_id = ingest(services, letter(extra="Her badge is EMP-204817."))
    other = ingest(services, "Badge EMP-999999 belongs to the night porter.\n", name="b.txt")
    stored = everything_stored_as_text(services)
    assert "EMP-204817" not in stored
    token = services.keyring.for_tenant("acme").token_for("EMPLOYEE_ID", "EMP-204817")
    assert token in stored
    assert keyword(services, "who has EMP-204817?") == [document_id]
    assert keyword(services, "EMP-999999") == [other]
    revealed = privacy.document_text(services, "acme", document_id, reveal=True)
    assert "Her badge is EMP-204817." in revealed.text


def test_a_bad_custom_pattern_or_kind_is_refused_and_nothing_is_stored(
    services: Services,
) -> None:
    for bad in (
        PiiPolicy(custom=(CustomPattern("EMPLOYEE_ID", r"(?<=x)\d+"),)),  # no look-behind
        PiiPolicy(custom=(CustomPattern("EMPLOYEE_ID", r"\d*"),)),  # matches nothing
        PiiPolicy(custom=(CustomPattern("EMAIL", r"x\d+"),)),  # a built-in kind
        PiiPolicy(custom=(CustomPattern("A_B", "x1"), CustomPattern("A_B", "x2"))),
        PiiPolicy(actions={"lower": PiiAction.KEEP}),
    ):
        with pytest.raises(InvalidRequest):
            set_policy(services, bad)
    assert privacy.get_policy(services, "acme").updated_at is None


# -- Search ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [SearchMode.KEYWORD, SearchMode.HYBRID])
def test_searching_an_exact_value_finds_the_documents_that_hold_it(
    services: Services, mode: SearchMode
) -> None:
    jane = ingest(services, letter())
    john = ingest(services, f"{FILLER}\n\nJohn's address is {OTHER_EMAIL}.\n", name="john.txt")
    plain = ingest(services, f"{FILLER}\n\nNo addresses here at all.\n", name="plain.txt")
    result = search(services, "acme", EMAIL, mode=mode, k=10)
    ids = list(dict.fromkeys(hit.document_id for hit in result.hits))
    assert ids[0] == jane
    if mode is SearchMode.KEYWORD:
        # The token is one phrase: another address ("email" + other hex) does not match.
        assert ids == [jane]
    else:
        assert set(ids) <= {jane, john, plain}
    token = services.keyring.for_tenant("acme").token_for("EMAIL", EMAIL)
    top = result.hits[0]
    assert EMAIL not in top.snippet
    if mode is SearchMode.KEYWORD:
        assert "<mark>" in top.snippet
        assert token[1:-1].split(":")[1] in top.snippet
    assert result.query == EMAIL


def test_one_value_written_two_ways_is_one_token(services: Services) -> None:
    document_id = ingest(services, letter())
    assert keyword(services, PHONE_OTHER_FORMAT) == [document_id]
    assert keyword(services, EMAIL.upper()) == [document_id]
    assert keyword(services, "4111-1111-1111-1111") == [document_id]


def test_the_query_embedding_sees_the_token_not_the_value(
    services: Services, embedder: MiniLMOnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = services.embedder.embed

    def embed_recording_spy(texts: Any) -> list[list[float]]:
        seen.extend(texts)
        return real(texts)

    monkeypatch.setattr(services.embedder, "embed", embed_recording_spy)
    search(services, "acme", f"letters to {EMAIL}", mode=SearchMode.SEMANTIC, k=3)
    token = services.keyring.for_tenant("acme").token_for("EMAIL", EMAIL)
    assert seen == [f"letters to {token}"]


def test_another_tenant_has_other_tokens_and_finds_nothing(services: Services) -> None:
    ingest(services, letter())
    rival = ingest(services, f"{FILLER}\n\nRival knows {EMAIL} too.\n", tenant="rival")
    acme_token = services.keyring.for_tenant("acme").token_for("EMAIL", EMAIL)
    rival_token = services.keyring.for_tenant("rival").token_for("EMAIL", EMAIL)
    assert acme_token != rival_token
    assert keyword(services, EMAIL, tenant="rival") == [rival]
    assert keyword(services, acme_token, tenant="rival") == []


# -- Reading the text -----------------------------------------------------------------


def test_the_text_is_reassembled_from_overlapping_chunks(services: Services) -> None:
    document_id = ingest(services, letter())
    chunks = stored_chunks(services, "acme", document_id)
    assert any(b.start_char < a.end_char for a, b in itertools.pairwise(chunks))
    shown = privacy.document_text(services, "acme", document_id, reveal=False)
    assert not shown.revealed
    for chunk in chunks:
        assert shown.text[chunk.start_char : chunk.end_char] == chunk.text
    assert EMAIL not in shown.text
    assert shown.text.startswith("# Account notes for <EMAIL:")


def test_reassembly_fills_gaps_between_chunks_at_their_offsets() -> None:
    spans = [
        Chunk("c1", "d", 0, "First paragraph.", 0, 16),
        Chunk("c2", "d", 1, "Second one.", 18, 29),
        Chunk("c3", "d", 2, "one. Third", 25, 35),
        Chunk("c4", "d", 3, "end", 36, 39),
    ]
    whole = privacy.reassemble(spans)
    assert whole == "First paragraph.\n\nSecond one. Third end"
    for span in spans:
        assert whole[span.start_char : span.end_char] == span.text


def test_reveal_replaces_tokens_with_this_documents_values(services: Services) -> None:
    document_id = ingest(services, letter())
    revealed = privacy.document_text(services, "acme", document_id, reveal=True)
    assert revealed.revealed
    assert revealed.unrevealed_tokens == 0
    assert f"Please reach Jane at {EMAIL} or call +14155550132." in revealed.text
    assert "card 4111111111111111 or the account DE89370400440532013000" in revealed.text
    assert revealed.title == f"Account notes for {EMAIL}"
    assert not TOKEN.search(revealed.text)


def test_a_token_copied_into_another_document_is_not_revealed_there(
    services: Services,
) -> None:
    ingest(services, letter())
    token = services.keyring.for_tenant("acme").token_for("EMAIL", EMAIL)
    other = ingest(services, f"{FILLER}\n\nSomeone pasted {token} here.\n", name="paste.txt")
    shown = privacy.document_text(services, "acme", other, reveal=True)
    assert token in shown.text
    assert EMAIL not in shown.text
    assert shown.unrevealed_tokens == 1


# -- Forget ---------------------------------------------------------------------------


def test_forget_shreds_the_value_everywhere_and_answers_a_receipt(services: Services) -> None:
    first = ingest(services, letter())
    second = ingest(services, f"{FILLER}\n\nCc {EMAIL} and {OTHER_EMAIL}.\n", name="cc.txt")
    untouched = ingest(services, f"{FILLER}\n\nOnly {OTHER_EMAIL} here.\n", name="john.txt")
    rival = ingest(services, f"{FILLER}\n\nRival: {EMAIL}.\n", tenant="rival")
    token = services.keyring.for_tenant("acme").token_for("EMAIL", EMAIL)

    receipt = privacy.forget(services, "acme", f"  {EMAIL.upper()} ")

    assert receipt.kinds == ["EMAIL"]
    assert receipt.tokens == [token]
    assert receipt.documents_affected == sorted([first, second])
    assert receipt.vault_entries_removed == 2
    assert receipt.documents_deleted == []
    assert receipt.clear_text_documents == []
    assert "blob store" in receipt.note
    for document_id in (first, second):
        shown = privacy.document_text(services, "acme", document_id, reveal=True)
        assert EMAIL not in shown.text.lower()
        assert token in shown.text
        assert shown.unrevealed_tokens == 1
    # Other values of the same documents still reveal; other documents are untouched.
    assert OTHER_EMAIL in privacy.document_text(services, "acme", second, reveal=True).text
    assert "+14155550132" in privacy.document_text(services, "acme", first, reveal=True).text
    assert OTHER_EMAIL in privacy.document_text(services, "acme", untouched, reveal=True).text
    assert EMAIL in privacy.document_text(services, "rival", rival, reveal=True).text
    again = privacy.forget(services, "acme", EMAIL)
    assert again.vault_entries_removed == 0
    assert again.documents_affected == []


def test_forget_can_delete_the_documents(services: Services) -> None:
    first = ingest(services, letter())
    kept = ingest(services, f"{FILLER}\n\nOnly {OTHER_EMAIL} here.\n", name="john.txt")
    receipt = privacy.forget(services, "acme", PHONE_OTHER_FORMAT, delete_documents=True)
    assert receipt.kinds == ["PHONE"]
    assert receipt.documents_deleted == [first]
    with pytest.raises(NotFound):
        documents.get(services, "acme", first)
    assert documents.get(services, "acme", kept).id == kept
    assert sql(services, "SELECT count(*) FROM pii_vault WHERE document_id = :d", d=first) == [(0,)]


def test_forget_can_delete_the_original_bytes_and_keep_the_document(services: Services) -> None:
    first = ingest(services, letter())
    sha = documents.get(services, "acme", first).sha256
    receipt = privacy.forget(services, "acme", CARD, delete_originals=True)
    assert receipt.originals_deleted == 1
    with pytest.raises(NotFound):
        services.blobs.get("acme", sha)
    assert documents.get(services, "acme", first).chunk_count > 0
    assert "bytes of the affected documents were deleted" in receipt.note


def test_forget_finds_values_a_keep_policy_left_in_clear(services: Services) -> None:
    set_policy(services, PiiPolicy(actions={"PHONE": PiiAction.KEEP}))
    clear = ingest(services, letter())
    # "555-01329" holds the phone's digits as a substring but is not that phone number.
    lookalike = ingest(services, f"{FILLER}\n\nOrder (415) 555-01329 shipped.\n", name="o.txt")
    receipt = privacy.forget(services, "acme", PHONE)
    assert receipt.clear_text_documents == [clear]
    assert receipt.documents_affected == [clear]
    assert lookalike not in receipt.documents_affected
    assert "clear text" in receipt.note
    deleted = privacy.forget(services, "acme", PHONE, delete_documents=True)
    assert deleted.documents_deleted == [clear]


def test_forget_lists_documents_whose_file_name_holds_the_value(services: Services) -> None:
    named = ingest(services, f"{FILLER}\n", name=f"for {EMAIL} (scan).txt")
    receipt = privacy.forget(services, "acme", EMAIL)
    assert receipt.clear_text_documents == [named]
    assert receipt.documents_affected == [named]
    assert "file name" in receipt.note


def test_forget_refuses_a_value_that_is_no_personal_data(services: Services) -> None:
    with pytest.raises(InvalidRequest) as caught:
        privacy.forget(services, "acme", "cider press")
    assert "cider" not in caught.value.message
    with pytest.raises(InvalidRequest):
        privacy.forget(services, "acme", "   ")


# -- Delete ---------------------------------------------------------------------------


def test_deleting_a_document_purges_its_vault(services: Services) -> None:
    document_id = ingest(services, letter())
    kept = ingest(services, f"{FILLER}\n\nOnly {OTHER_EMAIL} here.\n", name="john.txt")
    documents.delete(services, "acme", document_id)
    rows = sql(services, "SELECT document_id FROM pii_vault")
    assert rows == [(kept,)]


def test_a_title_is_never_cut_through_a_token() -> None:
    token = "<EMAIL:3f9a1c2b04d1>"
    title = "x" * 490 + " " + token
    assert privacy.clip_title(title, 500) == "x" * 490
    assert privacy.clip_title("short " + token, 500) == "short " + token


def test_a_token_in_a_query_is_one_required_phrase_and_nothing_can_be_injected() -> None:
    token = "<EMAIL:3f9a1c2b04d1>"
    assert fts_query(token) == '"email 3f9a1c2b04d1"'
    assert fts_query(f"contract {token}") == (
        '"email 3f9a1c2b04d1" AND ("email 3f9a1c2b04d1" OR "contract")'
    )
    assert fts_query("[EMAIL]") is None  # a redacted value is not searchable
    assert fts_query('x" OR tenant_id:* <EMAIL:zzzz>') == '"x" OR "tenant_id" OR "email" OR "zzzz"'
