"""Content-type detection from a file's first bytes.

The bytes decide: a declared type or a file name only breaks ties that the bytes leave open
(markdown versus plain text, a zip whose head does not show its ``word/`` entries yet). A declared
type that contradicts the bytes loses to the bytes.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import zipfile

import charset_normalizer

from spine.errors import UnsupportedContent

PLAIN = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

SUPPORTED_TYPES = (PLAIN, MARKDOWN, HTML, PDF, DOCX)

#: How much of the file detection looks at; callers pass at most this much.
HEAD_SIZE = 8 * 1024

_MARKDOWN_DECLARED = frozenset({"text/markdown", "text/x-markdown"})
_MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd", ".mkdn")
_HTML_DECLARED = frozenset({"text/html", "application/xhtml+xml"})
_HTML_SUFFIXES = (".html", ".htm", ".xhtml")

# Signatures of common non-document files, so that the error names what was seen.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "a legacy Microsoft Office file (.doc/.xls/.ppt); save it as .docx or PDF",
    ),
    (b"\x7fELF", "an ELF executable"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O file"),
    (b"\x00asm", "a WebAssembly module"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"OggS", "an Ogg media file"),
    (b"fLaC", "a FLAC audio file"),
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM media file"),
    (b"{\\rtf", "an RTF document (not supported; save it as .docx or PDF)"),
)

#: Byte-order marks and their codecs, longest first (the UTF-32 LE mark starts like UTF-16 LE's).
UNICODE_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Control characters that real text files carry: tab, line feed, vertical tab, form feed,
# carriage return, and escape (coloured terminal logs).
_TEXT_CONTROLS = frozenset("\t\n\x0b\x0c\r\x1b")

# Legacy single-byte text: the non-letters that a cp1252 reading may produce in Western
# European prose (punctuation, symbols, no-break space: the bytes 0x80-0xBF, 0xD7, 0xF7).
_CP1252_PUNCTUATION = frozenset(bytes([*range(0x80, 0xC0), 0xD7, 0xF7]).decode("cp1252", "ignore"))


def decode_text(data: bytes, *, final: bool = True) -> tuple[str, str] | None:
    """Decode bytes that should be text; return ``(text, encoding)`` or ``None``.

    Order: a byte-order mark (UTF-8/16/32), then strict UTF-8, then a cp1252 reading when it
    looks like Western European prose, then charset-normalizer's best guess. Bytes with NUL
    outside a BOM'd UTF-16/32 are not text. ``final=False`` tolerates a multi-byte character cut
    off at the end (a file's head). The BOM is not part of the returned text.
    """
    for bom, encoding in UNICODE_BOMS:
        if data.startswith(bom):
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(data[len(bom) :], final)
            except UnicodeDecodeError:
                return None
            return text, encoding
    if b"\x00" in data:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final), "utf-8"
    except UnicodeDecodeError:
        pass
    mostly = _mostly_utf8(data)
    if mostly is not None:
        return mostly, "utf-8"
    western = _try_cp1252(data)
    if western is not None:
        return western, "cp1252"
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        return None
    return str(best), best.encoding or "unknown"


def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 with a few broken bytes (a damaged or concatenated file): replace just those.

    Without this, one bad byte would send a UTF-8 file to a legacy code page and garble every
    other non-ASCII character in it.
    """
    text = data.decode("utf-8", errors="replace")
    broken = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    valid = sum(1 for char in text if not char.isascii()) - text.count("\ufffd")
    if valid >= 2 and broken <= valid // 10:
        return text
    return None


def _try_cp1252(data: bytes) -> str | None:
    """cp1252 when its reading looks like Western prose.

    Western European text has few non-ASCII characters, and they sit inside words of ASCII
    letters ("crème", "Straße"). Cyrillic, Greek, Hebrew... in their own code pages read in
    cp1252 as whole words of accented Latin letters ("Ïðèâåò"), which is what rules them out.
    """
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are undefined
        return None
    if any(
        not char.isascii() and not char.isalpha() and char not in _CP1252_PUNCTUATION
        for char in text
    ):
        return None
    accented = 0
    all_foreign = 0
    for word in _WORD.findall(text):
        if word.isascii():
            continue
        accented += 1
        if len(word) >= 3 and not any(char.isascii() for char in word):
            all_foreign += 1
    if all_foreign > 0.2 * accented:
        return None
    return text


_WORD = re.compile(r"[^\W\d_]+")


def _looks_like_text(text: str) -> bool:
    if not text:
        return True
    bad = sum(
        1
        for char in text
        if char not in _TEXT_CONTROLS and unicodedata.category(char) in ("Cc", "Cs", "Co")
    )
    return bad <= max(1, len(text) // 200)


def _media_type(declared: str | None) -> str | None:
    if not declared:
        return None
    return declared.split(";", 1)[0].strip().lower() or None


def _zip_type(head: bytes, declared: str | None, suffix: str) -> str:
    """DOCX, or raise naming the kind of zip that was seen."""
    names: list[str] | None = None
    try:
        with zipfile.ZipFile(io.BytesIO(head)) as archive:  # works when head is the whole file
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        names = None
    listing = "\n".join(names).encode("utf-8", "replace") if names is not None else head

    if b"word/" in listing:
        return DOCX
    if b"xl/" in listing:
        raise UnsupportedContent("an Excel workbook (.xlsx) is not supported")
    if b"ppt/" in listing:
        raise UnsupportedContent("a PowerPoint presentation (.pptx) is not supported")
    if b"application/vnd.oasis.opendocument" in head:
        raise UnsupportedContent("an OpenDocument file (.odt/.ods/.odp) is not supported")
    if b"application/epub+zip" in head:
        raise UnsupportedContent("an EPUB book is not supported")
    if names is None and (
        b"[Content_Types].xml" in listing or declared == DOCX or suffix == ".docx"
    ):
        # Only the head was given: an Office package whose word/ entries come later.
        return DOCX
    raise UnsupportedContent("a zip archive that is not a Word document (.docx)")


def _suffix(filename: str | None) -> str:
    if not filename:
        return ""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
    dot = base.rfind(".")
    return base[dot:] if dot > 0 else ""


_HTML_START = re.compile(r"<!doctype\s+html|<html[\s>]")
_HTML_SKELETON = re.compile(r"<(?:html|head|body)[\s>]")
_LEADING_NOISE = re.compile(r"(?:\s+|<\?xml[^>]*\?>|<!--.*?-->)*", re.S)
_ANY_TAG = re.compile(r"</?[a-z][a-z0-9]*[\s/>]")
_COMMON_TAG = re.compile(
    r"</?(p|div|span|a|table|tr|td|th|ul|ol|li|h[1-6]|br|hr|meta|title|script|style|link|"
    r"img|section|article|nav|header|footer|main|form|em|strong|b|i|pre|code|blockquote)[\s/>]"
)
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+\S", re.M)
_MD_SIGNALS = (
    re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\S", re.M),  # list item
    re.compile(r"\[[^\]\n]+\]\([^)\s]+[^)\n]*\)"),  # inline link or image
    re.compile(r"^(?:```|~~~)", re.M),  # fenced code
    re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),  # strong emphasis
    re.compile(r"^>[ \t]?\S", re.M),  # block quote
    re.compile(r"^\|?[ \t]*:?-{3,}:?[ \t]*\|", re.M),  # table delimiter row
)


def _is_markdown(text: str) -> bool:
    headings = len(_MD_HEADING.findall(text))
    others = sum(1 for signal in _MD_SIGNALS if signal.search(text))
    return (headings >= 1 and (others >= 1 or headings >= 2)) or others >= 3


def _html_tag_score(lowered: str) -> tuple[bool, int, int]:
    """(starts with a common tag, common tag occurrences, distinct common tags)."""
    found = _COMMON_TAG.findall(lowered)
    starts = _COMMON_TAG.match(lowered) is not None
    return starts, len(found), len(set(found))


def _text_type(text: str, declared: str | None, suffix: str) -> str:
    sample = text[:HEAD_SIZE]
    lowered = sample.lower()
    noise = _LEADING_NOISE.match(lowered)
    if noise is not None:
        lowered = lowered[noise.end() :]
    if _HTML_START.match(lowered):
        return HTML
    if lowered.startswith("<svg"):
        raise UnsupportedContent("an SVG image is not supported")
    if declared in _MARKDOWN_DECLARED or suffix in _MARKDOWN_SUFFIXES:
        return MARKDOWN
    if (declared in _HTML_DECLARED or suffix in _HTML_SUFFIXES) and _ANY_TAG.search(lowered):
        return HTML
    if _HTML_SKELETON.search(lowered[:2048]):
        return HTML
    if _is_markdown(sample):
        return MARKDOWN
    starts, occurrences, distinct = _html_tag_score(lowered)
    if (starts and occurrences >= 2) or distinct >= 3:
        return HTML
    return PLAIN


def detect_content_type(
    head: bytes, *, declared: str | None = None, filename: str | None = None
) -> str:
    """Return one of ``SUPPORTED_TYPES`` for a file whose first bytes are ``head``.

    ``head`` is the first up-to-8 KiB of the file (or all of it). ``declared`` is the type the
    uploader claimed (parameters such as ``; charset=`` are ignored) and ``filename`` its name;
    both only settle what the bytes leave open. Raises ``UnsupportedContent`` for an empty file
    and for anything that is not one of the supported types, naming what was seen.
    """
    if not head:
        raise UnsupportedContent("empty file")
    head = head[:HEAD_SIZE]
    media = _media_type(declared)
    suffix = _suffix(filename)

    if head.lstrip(b" \t\r\n").startswith(b"%PDF-"):
        return PDF
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return _zip_type(head, media, suffix)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise UnsupportedContent(f"{what} is not a supported document type")
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        raise UnsupportedContent("a WebP image is not a supported document type")
    if head[4:8] == b"ftyp":
        raise UnsupportedContent(
            "an MP4/QuickTime/HEIF media file is not a supported document type"
        )

    decoded = decode_text(head, final=False)  # the head may end inside a character
    if decoded is None or not _looks_like_text(decoded[0]):
        preview = head[:8].hex(" ")
        raise UnsupportedContent(
            f"unrecognised binary data (starts with bytes {preview}); supported types are "
            "PDF, Word (.docx), HTML, markdown and plain text"
        )
    return _text_type(decoded[0], media, suffix)
