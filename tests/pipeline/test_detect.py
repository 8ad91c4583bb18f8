"""detect_content_type: the bytes decide; the declared type and the name only break ties."""

from __future__ import annotations

import io
import random
import unicodedata
import zipfile

import docx
import pytest
from fpdf import FPDF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spine.errors import UnsupportedContent
from spine.pipeline.detect import (
    DOCX,
    HTML,
    MARKDOWN,
    PDF,
    PLAIN,
    SUPPORTED_TYPES,
    decode_text,
    detect_content_type,
)


def make_pdf() -> bytes:
    pdf = FPDF()
    pdf.set_title("Detection Fixture")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "A document about pelicans.")
    return bytes(pdf.output())


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Fixture", level=1)
    document.add_paragraph("Some words.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_zip(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def head(data: bytes) -> bytes:
    return data[: 8 * 1024]


# --- PDF and DOCX ------------------------------------------------------------------------------


def test_pdf_is_detected_from_its_magic() -> None:
    assert detect_content_type(head(make_pdf())) == PDF


def test_pdf_bytes_win_over_a_declared_text_type_and_name() -> None:
    assert detect_content_type(make_pdf(), declared="text/plain", filename="notes.txt") == PDF


def test_docx_is_detected_from_the_whole_file_and_from_its_head() -> None:
    data = make_docx()
    assert len(data) > 8 * 1024  # so that head() really is a truncated zip
    assert detect_content_type(data) == DOCX
    assert detect_content_type(head(data)) == DOCX


def test_docx_bytes_win_over_a_declared_pdf() -> None:
    assert detect_content_type(make_docx(), declared="application/pdf") == DOCX


def test_a_zip_that_is_not_docx_is_unsupported() -> None:
    data = make_zip({"notes/a.txt": b"hello", "notes/b.txt": b"world"})
    with pytest.raises(UnsupportedContent, match="zip archive"):
        detect_content_type(data)


def test_a_complete_zip_named_docx_without_word_entries_is_still_unsupported() -> None:
    data = make_zip({"notes/a.txt": b"hello"})
    with pytest.raises(UnsupportedContent, match="zip archive"):
        detect_content_type(data, filename="report.docx", declared=DOCX)


def test_an_excel_workbook_is_named_in_the_error() -> None:
    data = make_zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
    with pytest.raises(UnsupportedContent, match="Excel"):
        detect_content_type(data)


def test_a_zip_head_that_hides_its_entries_is_docx_only_when_named_so() -> None:
    # A first entry stored uncompressed and larger than the head: the head shows no word/.
    filler = bytes(random.Random(7).randrange(256) for _ in range(20_000))
    data = make_zip({"customXml/item1.bin": filler}, compression=zipfile.ZIP_STORED)
    assert b"word/" not in head(data)
    assert detect_content_type(head(data), filename="Report.DOCX") == DOCX
    assert detect_content_type(head(data), declared=DOCX) == DOCX
    with pytest.raises(UnsupportedContent, match="zip archive"):
        detect_content_type(head(data), filename="archive.zip")


# --- text types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b"<!DOCTYPE html><html><head><title>T</title></head><body><p>x</p></body></html>",
        b"\n\n  <!doctype HTML>\n<p>lower-case doctype after blank lines</p>",
        b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
        b"<html><body>no doctype</body></html>",
        b"<!-- a comment first -->\n<html><p>x</p></html>",
        b"<p>Hello</p><p>World</p>",
        b"<div><span>a</span> and <a href='#'>a link</a></div>",
    ],
)
def test_html_is_detected(document: bytes) -> None:
    assert detect_content_type(document) == HTML


def test_html_bytes_win_over_a_declared_plain_type() -> None:
    page = b"<!DOCTYPE html><html><body><p>x</p></body></html>"
    assert detect_content_type(page, declared="text/plain", filename="page.txt") == HTML


def test_declared_html_needs_some_markup() -> None:
    assert detect_content_type(b"<b>bold</b> claim", declared="text/html; charset=utf-8") == HTML
    assert detect_content_type(b"no markup at all", declared="text/html") == PLAIN


def test_markdown_by_extension_or_declared_type() -> None:
    text = b"Just a line of text.\n"
    assert detect_content_type(text, filename="README.md") == MARKDOWN
    assert detect_content_type(text, filename="/docs/notes.markdown") == MARKDOWN
    assert detect_content_type(text, declared="text/markdown; charset=utf-8") == MARKDOWN
    assert detect_content_type(text, declared="text/x-markdown") == MARKDOWN
    assert detect_content_type(text) == PLAIN


def test_markdown_by_its_signals() -> None:
    text = (
        b"# Install\n\nRun the installer.\n\n- step one\n- step two\n\n"
        b"See [the docs](https://example.org/docs).\n"
    )
    assert detect_content_type(text) == MARKDOWN


def test_a_lone_hash_line_is_not_markdown() -> None:
    assert detect_content_type(b"# just a comment\nvalue = 1\n") == PLAIN


def test_a_markdown_file_with_inline_html_stays_markdown_by_its_name() -> None:
    text = b'<p align="center"><img src="logo.png"></p>\n\n# Project\n\nText.\n'
    assert detect_content_type(text, filename="README.md") == MARKDOWN


def test_declared_pdf_loses_to_text_bytes() -> None:
    assert detect_content_type(b"plain words", declared="application/pdf") == PLAIN


@pytest.mark.parametrize(
    "data",
    [
        b"Hello, world.\n",
        "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, d\u00e9j\u00e0 vu.\n".encode("latin-1"),
        "\u00dcber Stra\u00dfen".encode(),
        b"\xef\xbb\xbfwith a UTF-8 BOM",
        "UTF-16 with a BOM".encode("utf-16"),
        "Hi: \u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a?".encode("cp1251"),
        b"tab\tseparated\tvalues\r\nwindows\tline\tends\r\n",
    ],
)
def test_plain_text_in_various_encodings(data: bytes) -> None:
    assert detect_content_type(data) == PLAIN


def test_a_head_cut_inside_a_utf8_character_is_still_text() -> None:
    text = ("a" + "\u00e9t\u00e9 " * 3000).encode()
    cut = text[: 8 * 1024]
    assert cut[-1:] == b"\xc3"  # the head ends in the middle of "é"
    assert detect_content_type(cut) == PLAIN


# --- unsupported -------------------------------------------------------------------------------


def test_empty_file() -> None:
    with pytest.raises(UnsupportedContent, match="empty file"):
        detect_content_type(b"", declared="text/plain", filename="a.txt")


def test_random_bytes_are_unsupported_and_the_reason_shows_the_bytes() -> None:
    data = random.Random(42).randbytes(4096)
    with pytest.raises(UnsupportedContent, match="binary data") as error:
        detect_content_type(data, declared="text/plain", filename="notes.txt")
    assert data[:2].hex() in str(error.value).replace(" ", "")


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "PNG"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64), "JPEG"),
        (b"GIF89a" + bytes(64), "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(64), "WebP"),
        (b"\x1f\x8b\x08\x00" + bytes(64), "gzip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "legacy Microsoft Office"),
        (b"{\\rtf1\\ansi Hello}", "RTF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "SVG"),
    ],
)
def test_known_binary_formats_are_named(data: bytes, named: str) -> None:
    with pytest.raises(UnsupportedContent, match=named):
        detect_content_type(data, filename="upload.pdf", declared=PDF)


def test_control_character_garbage_is_not_text() -> None:
    with pytest.raises(UnsupportedContent):
        detect_content_type(bytes(range(1, 32)) * 20)


def test_decode_text_prefers_utf8_and_keeps_a_mostly_utf8_file_utf8() -> None:
    assert decode_text("h\u00e9llo".encode()) == ("h\u00e9llo", "utf-8")
    damaged = "d\u00e9j\u00e0 vu, \u00e9t\u00e9 ".encode() * 10 + b"\xff"
    decoded = decode_text(damaged)
    assert decoded is not None
    assert decoded[0].startswith("d\u00e9j\u00e0 vu")
    assert decoded[0].endswith("\ufffd")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048), st.sampled_from([None, "text/plain", DOCX, PDF, "text/html"]))
def test_any_bytes_give_a_supported_type_or_unsupported_content(
    data: bytes, declared: str | None
) -> None:
    try:
        detected: str | None = detect_content_type(data, declared=declared, filename="upload.bin")
    except UnsupportedContent:  # any other exception fails the test
        detected = None
    assert detected is None or detected in SUPPORTED_TYPES


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=500).filter(lambda s: "\x00" not in s))
def test_utf8_text_without_controls_is_a_text_type(text: str) -> None:
    garbage = {"Cc", "Co"}  # controls and private-use characters
    if any(unicodedata.category(c) in garbage and c not in "\t\n\r\x0b\x0c\x1b" for c in text):
        return
    # printable signatures of other formats
    assume(not text.lstrip().lower().startswith(("<svg", "%pdf-")))
    assume(not text.startswith(("GIF87a", "GIF89a", "OggS", "fLaC", "{\\rtf")))
    assume(text.encode()[4:8] != b"ftyp")
    assert detect_content_type(text.encode()) in (PLAIN, MARKDOWN, HTML)
