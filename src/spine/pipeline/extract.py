"""Text extraction: a document's bytes and content type in, normalised text and a title out.

Every parser failure becomes an ``ExtractionError`` with a readable reason; no library exception
escapes. A document without any text (a scanned PDF without a text layer, an empty page) is an
``ExtractionError`` too: there is nothing to index.
"""

from __future__ import annotations

import io
import re
import threading
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docx
import pypdfium2
from selectolax.lexbor import LexborHTMLParser, LexborNode

from spine.errors import ExtractionError
from spine.pipeline.detect import DOCX, HTML, MARKDOWN, PDF, PLAIN, UNICODE_BOMS, decode_text


@dataclass(frozen=True, slots=True)
class Extracted:
    """Normalised text and the document's title, if it has one.

    ``text`` uses ``\\n`` line ends, has no NUL or other control characters besides tab and line
    feed, no trailing spaces on lines, and paragraphs separated by exactly one blank line.
    """

    text: str
    title: str | None


# PDFium is not thread-safe, not even across documents: one extraction at a time per process.
_PDFIUM_LOCK = threading.Lock()

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ufeff\ufffe\uffff]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"\s+")
_INLINE_SPACES = re.compile(r"[^\S\n]+")


def normalise_text(text: str) -> str:
    """NFC; line ends to ``\\n``; NUL and controls dropped; one blank line between paragraphs."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def _clean_title(title: str | None) -> str | None:
    if not title:
        return None
    title = _SPACES.sub(" ", _CONTROL.sub("", unicodedata.normalize("NFC", title))).strip()
    return title or None


def _result(text: str, title: str | None, what: str) -> Extracted:
    text = normalise_text(text)
    if not text:
        raise ExtractionError(f"no extractable text in the {what}")
    return Extracted(text=text, title=_clean_title(title))


#: Default of ``extract``'s zip bomb limit; the service passes ``Settings.max_uncompressed_bytes``.
DEFAULT_MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024


def extract(
    data: bytes,
    content_type: str,
    *,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
) -> Extracted:
    """Extract the text and title of a document of a type from ``SUPPORTED_TYPES``.

    Raises ``ExtractionError`` when the bytes cannot be parsed (corrupt, truncated or encrypted
    files, undecodable text), hold no text, or the content type is not one Spine extracts; and
    when a .docx would expand to more than ``max_uncompressed_bytes`` or looks like a zip bomb,
    or an HTML page nests elements absurdly deep.

    Time and memory are not bounded here: a parser can still hang or crash on a hostile file.
    The service runs this function in ``spine.pipeline.sandbox.ExtractionSandbox``.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if not data:
        raise ExtractionError("empty file: no extractable text")
    if media == PDF:
        return _extract_pdf(data)
    if media == DOCX:
        return _extract_docx(data, max_uncompressed_bytes)
    if media == HTML:
        return _extract_html(data)
    if media == MARKDOWN:
        text = _decode(data)
        return _result(text, _markdown_title(text), "markdown document")
    if media == PLAIN:
        return _result(_decode(data), None, "text file")
    raise ExtractionError(f"cannot extract text from content type {content_type!r}")


# --- text and markdown -------------------------------------------------------------------------


def _decode(data: bytes, declared_charset: str | None = None) -> str:
    """Bytes of a text document to str: BOM, else UTF-8, else a declared charset, else a guess."""
    for bom, encoding in UNICODE_BOMS:
        if data.startswith(bom):  # a BOM is a strong signal: a few bad bytes do not undo it
            return data[len(bom) :].decode(encoding, errors="replace")
    data = data.replace(b"\x00", b"")  # stray NULs; UTF-16 without a BOM is not supported
    if declared_charset is not None:
        try:
            return data.decode("utf-8")  # valid UTF-8 wins over a declaration
        except UnicodeDecodeError:
            pass
        try:
            return data.decode(declared_charset, errors="replace")
        except (LookupError, ValueError):  # unknown, or not a text codec
            pass
    decoded = decode_text(data)
    if decoded is None:
        raise ExtractionError("cannot decode the text: unknown character encoding or binary data")
    return decoded[0]


_ATX_H1 = re.compile(r"^ {0,3}#[ \t]+(\S.*)$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _markdown_title(text: str) -> str | None:
    """The first level-one ATX heading outside fenced code."""
    fence: str | None = None
    for line in text.splitlines():
        marker = _FENCE.match(line)
        if marker is not None:
            if fence is None:
                fence = marker.group(1)
            elif marker.group(1) == fence:
                fence = None
            continue
        if fence is None:
            heading = _ATX_H1.match(line)
            if heading is not None:
                return _strip_closing_hashes(heading.group(1))
    return None


def _strip_closing_hashes(heading: str) -> str:
    heading = heading.rstrip()
    bare = heading.rstrip("#")
    if bare != heading and (not bare or bare[-1] in " \t"):
        return bare.rstrip()
    return heading


# --- PDF ---------------------------------------------------------------------------------------


def _extract_pdf(data: bytes) -> Extracted:
    with _PDFIUM_LOCK:
        try:
            document = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            if getattr(exc, "err_code", None) == pypdfium2.raw.FPDF_ERR_PASSWORD:
                raise ExtractionError("the PDF is encrypted and needs a password") from exc
            raise ExtractionError(
                f"cannot open the PDF, it is damaged or not a PDF: {exc}"
            ) from exc
        except Exception as exc:
            raise ExtractionError(f"cannot open the PDF: {exc}") from exc
        try:
            title = _pdf_title(document)
            pages = list(_pdf_pages(document))
        except Exception as exc:
            raise ExtractionError(f"cannot read the PDF's text: {exc}") from exc
        finally:
            document.close()
    if not any(page.strip() for page in pages):
        raise ExtractionError(
            "no extractable text in the PDF: it has no text layer (a scan needs OCR, "
            "which Spine does not do)"
        )
    return _result("\n\n".join(pages), title, "PDF")


def _pdf_title(document: Any) -> str | None:
    try:
        metadata = document.get_metadata_dict(skip_empty=True)
    except Exception:  # metadata is optional: a broken Info dictionary is no reason to fail
        return None
    title = metadata.get("Title")
    return title if isinstance(title, str) else None


def _pdf_pages(document: Any) -> Iterator[str]:
    for index in range(len(document)):
        page = document[index]
        try:
            textpage = page.get_textpage()
            try:
                yield str(textpage.get_text_bounded())
            finally:
                textpage.close()
        finally:
            page.close()


# --- DOCX --------------------------------------------------------------------------------------


_ZIP_MAX_MEMBERS = 10_000
_ZIP_MAX_RATIO = 200
_ZIP_RATIO_FLOOR = 10 * 1024 * 1024  # members smaller than this may compress as well as they like
# Word writes stored and deflated members only. zipfile's bzip2 and lzma readers inflate all
# the compressed bytes of a read in one call, whatever the size asked for.
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_ZIP_END_RECORD = b"PK\x05\x06"
_ZIP_END_RECORD_SIZE = 22
_ZIP_COPY_CHUNK = 1024 * 1024


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f}"


def _zip_declared_count(data: bytes) -> int | None:
    """The member count the end-of-central-directory record declares, read before zipfile
    builds an object per member; None without a record, or when it defers to a ZIP64 record."""
    end = data.rfind(_ZIP_END_RECORD, max(0, len(data) - _ZIP_END_RECORD_SIZE - 0xFFFF))
    if end < 0 or len(data) - end < _ZIP_END_RECORD_SIZE:
        return None
    count = int.from_bytes(data[end + 10 : end + 12], "little")
    return None if count == 0xFFFF else count


def _check_zip_directory(data: bytes, max_uncompressed_bytes: int) -> None:
    """Refuse a .docx whose zip would expand absurdly, from its central directory alone."""
    declared = _zip_declared_count(data)
    if declared is not None and declared > _ZIP_MAX_MEMBERS:
        raise ExtractionError(
            f"refused as a possible zip bomb: the Word document holds {declared:,} files, "
            f"more than {_ZIP_MAX_MEMBERS:,}"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except Exception as exc:
        raise ExtractionError(
            f"cannot open the Word document, it is damaged or not a .docx file: {exc}"
        ) from exc
    if len(members) > _ZIP_MAX_MEMBERS:
        raise ExtractionError(
            f"refused as a possible zip bomb: the Word document holds {len(members):,} files, "
            f"more than {_ZIP_MAX_MEMBERS:,}"
        )
    total = 0
    for member in members:
        name = member.filename[:100]
        if member.compress_type not in _ZIP_METHODS:
            raise ExtractionError(
                f"the Word document is not a .docx file: {name!r} uses zip compression method "
                f"{member.compress_type}, which Word does not use"
            )
        if (
            member.file_size > _ZIP_RATIO_FLOOR
            and member.file_size > _ZIP_MAX_RATIO * member.compress_size
        ):
            ratio = member.file_size / max(member.compress_size, 1)
            raise ExtractionError(
                f"refused as a possible zip bomb: {name!r} in the Word document expands "
                f"{ratio:,.0f} times, to {_mib(member.file_size)} MB"
            )
        total += member.file_size
    if total > max_uncompressed_bytes:
        raise ExtractionError(
            f"refused as a possible zip bomb: the Word document would expand to "
            f"{_mib(total)} MB, more than the limit of {_mib(max_uncompressed_bytes)} MB"
        )


def _bounded_docx_copy(data: bytes) -> io.BytesIO:
    """The .docx's members re-stored uncompressed, read ``_ZIP_COPY_CHUNK`` at a time.

    The sizes in a zip's directory can lie. zipfile stops at a member's declared size and then
    checks its CRC, but a ``read()`` of a whole member (python-docx's way) first inflates up to
    2 GiB at once. Reading in chunks keeps the inflated data at the declared size, which
    ``_check_zip_directory`` has bounded; stored members are then read as they are.
    """
    copy = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as target,
    ):
        for member in source.infolist():
            if member.is_dir():
                continue
            with source.open(member) as reader, target.open(member.filename, "w") as writer:
                while chunk := reader.read(_ZIP_COPY_CHUNK):
                    writer.write(chunk)
    copy.seek(0)
    return copy


def _extract_docx(data: bytes, max_uncompressed_bytes: int) -> Extracted:
    _check_zip_directory(data, max_uncompressed_bytes)
    try:
        document = docx.Document(_bounded_docx_copy(data))
    except Exception as exc:
        raise ExtractionError(
            f"cannot open the Word document, it is damaged or not a .docx file: {exc}"
        ) from exc
    try:
        blocks = list(_docx_blocks(document))
        title = _clean_title(document.core_properties.title) or _docx_heading(document)
    except Exception as exc:
        raise ExtractionError(f"cannot read the Word document: {exc}") from exc
    return _result("\n\n".join(blocks), title, "Word document")


def _docx_blocks(container: Any) -> Iterator[str]:
    """Paragraphs and tables in document order; a table row becomes one line."""
    for item in container.iter_inner_content():
        if hasattr(item, "rows"):
            yield "\n".join(_docx_table_lines(item))
        else:
            yield str(item.text)


def _docx_table_lines(table: Any) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        seen: list[Any] = []
        for cell in row.cells:
            if any(cell._tc is other for other in seen):  # a merged cell repeats per grid column
                continue
            seen.append(cell._tc)
            text = " ".join(block.strip() for block in _docx_blocks(cell) if block.strip())
            if text:
                cells.append(text)
        if cells:
            yield " | ".join(cells)


def _docx_heading(document: Any) -> str | None:
    for paragraph in document.paragraphs:
        style = paragraph.style
        name = str(style.name) if style is not None and style.name else ""
        if (name == "Title" or name.startswith("Heading")) and paragraph.text.strip():
            return str(paragraph.text)
    return None


# --- HTML --------------------------------------------------------------------------------------

_DROPPED = frozenset(
    {"head", "script", "style", "noscript", "template", "svg", "math", "iframe", "object"}
)
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
        "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "frameset", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend",
        "li", "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody",
        "tfoot", "thead", "tr", "ul", "option", "textarea", "title",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)

# Nesting deeper than this is refused before parsing. Deep markup cannot exhaust the stack
# (lexbor builds the tree without recursion, and _html_walk does not recurse), but lexbor's
# tree builder scans the stack of open elements at many start tags (<div>, <p>, <ul>...), so its
# time grows with the square of the depth: 10,000 nested <div> parse in 0.2 s, 100,000 in 35 s.
_HTML_MAX_DEPTH = 10_000
# Comments and raw-text elements (their content is not markup), then any start or end tag.
# [^<>] keeps every attempt to match a tag short, so the scan stays linear on hostile input.
_HTML_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<(script|style|textarea|title|xmp|iframe|noembed|noframes|plaintext)\b[^<>]*>"
    r".*?(?:</\1\s*>|\Z)"
    r"|<(/?)([a-z][a-z0-9-]*)[^<>]*?(/?)>",
    re.I | re.S,
)
# Elements that do not deepen the tree: void ones, those an unclosed sibling ends (<p>, <li>),
# and those the parser never nests in themselves (<a>, <button>, <form>, <nobr>).
_HTML_FLAT = frozenset(
    {
        "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image",
        "img", "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
        "p", "li", "dd", "dt", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot",
        "caption", "colgroup", "rb", "rp", "rt", "rtc", "html", "head", "body",
        "a", "button", "form", "nobr",
    }
)  # fmt: skip


def _html_too_deep(text: str, limit: int = _HTML_MAX_DEPTH) -> bool:
    """Whether the markup nests elements deeper than ``limit``, estimated from the tags alone.

    An estimate: the parser's own rules close some elements without end tags. Those are left
    out of the count, and stray end tags lower it, so it errs low rather than refuse a real
    page. Formatting tags left open (<font>, <b>) do nest in the parsed tree too, and count.
    """
    if text.count("<") <= limit:
        return False
    depth = 0
    for token in _HTML_TOKEN.finditer(text):
        name = token.group(3)
        if name is None or token.group(4) or name.lower() in _HTML_FLAT:
            continue
        if token.group(2):
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > limit:
                return True
    return False


class _HtmlText:
    """Collects paragraphs: inline text is joined, block elements end a paragraph."""

    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self._parts: list[str] = []
        self._cell_pending = False

    def text(self, value: str, *, preformatted: bool) -> None:
        if self._cell_pending and value.strip():
            self._parts.append(" | ")
            self._cell_pending = False
        self._parts.append(value if preformatted else _SPACES.sub(" ", value))

    def line_break(self) -> None:
        self._parts.append("\n")

    def cell(self) -> None:
        """A table cell starts: separate it from earlier text of the row."""
        if any(part.strip() for part in self._parts):
            self._cell_pending = True

    def end_paragraph(self) -> None:
        self._cell_pending = False
        if not self._parts:
            return
        lines = (_INLINE_SPACES.sub(" ", line).strip() for line in "".join(self._parts).split("\n"))
        paragraph = "\n".join(line for line in lines if line)
        self._parts = []
        if paragraph:
            self.paragraphs.append(paragraph)


def _html_walk(root: LexborNode, out: _HtmlText) -> None:
    """Depth first, without recursion: deeply nested markup must not hit the recursion limit."""
    stack: list[tuple[LexborNode, bool]] = [(root, True)]
    preformatted = 0
    while stack:
        node, entering = stack.pop()
        tag = node.tag or ""
        if not entering:
            if tag in _BLOCKS:
                out.end_paragraph()
            if tag == "pre":
                preformatted -= 1
            continue
        if node.is_text_node:
            out.text(node.text_content or "", preformatted=preformatted > 0)
            continue
        if not node.is_element_node and not node.is_document_node:
            continue  # comments, doctype, processing instructions
        if tag in _DROPPED or "hidden" in node.attributes:
            continue
        if tag == "br":
            out.line_break()
            continue
        if tag in _BLOCKS:
            out.end_paragraph()
        elif tag in _CELLS:
            out.cell()
        if tag == "pre":
            preformatted += 1
        stack.append((node, False))
        children: list[LexborNode] = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((child, True) for child in reversed(children))


def _html_title(tree: LexborHTMLParser) -> str | None:
    for selector in ("head title", "title", "h1"):
        node = tree.css_first(selector)
        if node is not None:
            title = _clean_title(node.text(deep=True))
            if title:
                return title
    return None


def _extract_html(data: bytes) -> Extracted:
    declared = _META_CHARSET.search(data[:4096])
    charset = declared.group(1).decode("ascii") if declared is not None else None
    if charset is not None and charset.lower().replace("-", "").startswith(("utf16", "utf32")):
        charset = None  # an ASCII-compatible page cannot really be UTF-16 (HTML spec)
    text = _decode(data, charset)
    if _html_too_deep(text):
        raise ExtractionError(
            f"the HTML page nests elements more than {_HTML_MAX_DEPTH:,} levels deep"
        )
    try:
        tree = LexborHTMLParser(text)
        title = _html_title(tree)
        out = _HtmlText()
        if tree.root is not None:
            _html_walk(tree.root, out)
        out.end_paragraph()
    except Exception as exc:
        raise ExtractionError(f"cannot parse the HTML: {exc}") from exc
    return _result("\n\n".join(out.paragraphs), title, "HTML page")
