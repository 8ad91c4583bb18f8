"""A search's :class:`SearchFilter` as SQL on the chunks' documents, for both search indexes.

The filter goes inside each leg's own query, before its ``LIMIT``, so that the index keeps
reading until it has ``limit`` chunks that pass: keeping the passing ones of a fixed pool
of nearest or best-ranked chunks would return fewer, or none, for a selective filter.

Every condition is standard SQL but the metadata one: "the top-level key holds one of
these JSON values, of the same JSON type" has no common spelling. Keys and values are
bound parameters on both databases; a key is never read as a JSON path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVarTuple

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    String,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB

from spine.adapters.sql.tables import chunks, documents
from spine.domain.search import MetadataValue, SearchFilter

_Columns = TypeVarTuple("_Columns")


def filtered(
    query: Select[*_Columns], chunk: FromClause, filters: SearchFilter, dialect: str
) -> Select[*_Columns]:
    """``query`` joined to the document of each of its ``chunk`` rows, keeping the rows
    whose document passes ``filters``; ``query`` itself when there is nothing to filter,
    so that an unfiltered search pays for no join."""
    if filters.empty:
        return query
    return query.join(documents, _document_of(chunk)).where(_passes(filters, dialect))


def passing_chunk_keys(tenant_id: str, filters: SearchFilter, dialect: str) -> Select[int]:
    """The keys (``seq``) of the tenant's chunks whose document passes ``filters``: the set
    an index that cannot join (sqlite-vec's KNN) is told to search within."""
    query = select(chunks.c.seq).where(chunks.c.tenant_id == tenant_id)
    # Never correlated: the search that takes this set names the chunks table too.
    return filtered(query, chunks, filters, dialect).correlate(None)


def _document_of(chunk: FromClause) -> ColumnElement[bool]:
    return (documents.c.id == chunk.c.document_id) & (documents.c.tenant_id == chunk.c.tenant_id)


def _passes(filters: SearchFilter, dialect: str) -> ColumnElement[bool]:
    """Every condition of ``filters`` on ``documents``. An empty tuple of ids, content
    types or values lets nothing pass (SQLAlchemy renders an empty IN as false)."""
    try:
        metadata_holds = _METADATA_CONDITIONS[dialect]
    except KeyError:
        raise NotImplementedError(f"no metadata filter for {dialect}") from None
    conditions = [metadata_holds(key, values) for key, values in filters.metadata]
    if filters.document_ids is not None:
        conditions.append(documents.c.id.in_(filters.document_ids))
    if filters.content_types is not None:
        conditions.append(documents.c.content_type.in_(filters.content_types))
    if filters.created_from is not None:
        conditions.append(documents.c.created_at >= filters.created_from)
    if filters.created_before is not None:
        conditions.append(documents.c.created_at < filters.created_before)
    return and_(*conditions)


def _sqlite_metadata(key: str, values: tuple[MetadataValue, ...]) -> ColumnElement[bool]:
    """json_each lists the object's top-level entries with each one's label (unescaped,
    compared as is) and JSON type: a path built from the key would read ``a.b`` as a
    nested key and could not spell every label. ``atom`` is the value as SQL, where true
    is 1 and "1" is text, so the type is what tells them apart."""
    entry = func.json_each(documents.c.metadata).table_valued("key", "type", "atom")
    strings = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    booleans = ["true" if v else "false" for v in values if isinstance(v, bool)]
    alternatives: list[ColumnElement[bool]] = []
    if strings:
        alternatives.append((entry.c.type == "text") & entry.c.atom.in_(strings))
    if numbers:
        alternatives.append(entry.c.type.in_(("integer", "real")) & entry.c.atom.in_(numbers))
    if booleans:
        alternatives.append(entry.c.type.in_(booleans))
    return exists().where(entry.c.key == key, or_(false(), *alternatives))


def _postgres_metadata(key: str, values: tuple[MetadataValue, ...]) -> ColumnElement[bool]:
    """jsonb equality compares type and value ("1" is not 1, true is not 1; 1 is 1.0), and
    ``->`` with a text operand looks up that exact key. The column is ``json``, which has
    no equality, hence the cast."""
    value = cast(documents.c.metadata, JSONB).op("->", return_type=JSONB)(literal(key, String))
    # Typed, so each value is bound as its JSON text: untyped, 1 and "1" would be SQL values.
    return value.in_(bindparam(None, list(values), type_=JSONB, expanding=True))


_METADATA_CONDITIONS: dict[str, Callable[[str, tuple[MetadataValue, ...]], ColumnElement[bool]]] = {
    "sqlite": _sqlite_metadata,
    "postgresql": _postgres_metadata,
}
