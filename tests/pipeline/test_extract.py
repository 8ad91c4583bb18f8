"""extract: text and title from each supported type; every failure is an ExtractionError."""

from __future__ import annotations

import io
import random
import zipfile

import docx
import pytest
from fpdf import FPDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spine.errors import ExtractionError
from spine.pipeline.detect import DOCX, HTML, MARKDOWN, PDF, PLAIN, SUPPORTED_TYPES
from spine.pipeline.extract import Extracted, extract

PHRASE = "The migratory pelicans of Lake Titicaca"


def make_pdf(*, title: str | None = "Pelican Field Notes", text_pages: int = 2) -> bytes:
    pdf = FPDF()
    if title is not None:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for number in range(1, text_pages + 1):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"Page {number}. {PHRASE} return every spring.")
    return bytes(pdf.output())


def make_scanned_pdf() -> bytes:
    """Pages with drawings only: no text layer, as a scan would be."""
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    pdf.line(10, 10, 150, 150)
    return bytes(pdf.output())


def make_docx(*, core_title: str | None = None) -> bytes:
    document = docx.Document()
    if core_title is not None:
        document.core_properties.title = core_title
    document.add_paragraph("A note before the heading.")
    document.add_heading("Budget Overview", level=1)
    document.add_paragraph("The first paragraph mentions aardvarks.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Item"
    table.cell(0, 1).text = "Cost"
    table.cell(1, 0).text = "Telescope"
    table.cell(1, 1).text = "1200"
    document.add_paragraph("The closing paragraph mentions zebras.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def assert_normalised(extracted: Extracted) -> None:
    text = extracted.text
    assert text
    assert text == text.strip()
    assert "\r" not in text
    assert "\x00" not in text
    assert "\n\n\n" not in text
    assert all(line == line.rstrip() for line in text.split("\n"))


# --- PDF ---------------------------------------------------------------------------------------


def test_pdf_text_and_metadata_title() -> None:
    extracted = extract(make_pdf(), PDF)
    assert_normalised(extracted)
    assert PHRASE in extracted.text
    assert extracted.title == "Pelican Field Notes"
    # pages in order, separated by a blank line
    assert extracted.text.index("Page 1.") < extracted.text.index("Page 2.")
    assert "spring.\n\nPage 2." in extracted.text


def test_pdf_without_title_metadata_has_no_title() -> None:
    assert extract(make_pdf(title=None), PDF).title is None


def test_pdf_content_type_parameters_are_ignored() -> None:
    assert PHRASE in extract(make_pdf(), "Application/PDF; name=x.pdf").text


def test_pdf_without_a_text_layer_has_no_extractable_text() -> None:
    with pytest.raises(ExtractionError, match="no extractable text"):
        extract(make_scanned_pdf(), PDF)


def test_truncated_pdf_is_an_extraction_error() -> None:
    with pytest.raises(ExtractionError, match="PDF"):
        extract(make_pdf()[:200], PDF)


def test_pdf_magic_followed_by_garbage_is_an_extraction_error() -> None:
    data = b"%PDF-1.7\n" + random.Random(3).randbytes(2000)
    with pytest.raises(ExtractionError, match="PDF"):
        extract(data, PDF)


def test_password_protected_pdf_is_an_extraction_error() -> None:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner-secret", user_password="user-secret")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Secret pelicans.")
    with pytest.raises(ExtractionError, match="password"):
        extract(bytes(pdf.output()), PDF)


# --- DOCX --------------------------------------------------------------------------------------


def test_docx_paragraphs_and_table_in_document_order() -> None:
    extracted = extract(make_docx(), DOCX)
    assert_normalised(extracted)
    assert extracted.text == (
        "A note before the heading.\n\n"
        "Budget Overview\n\n"
        "The first paragraph mentions aardvarks.\n\n"
        "Item | Cost\nTelescope | 1200\n\n"
        "The closing paragraph mentions zebras."
    )


def test_docx_title_is_the_first_heading_without_core_title() -> None:
    assert extract(make_docx(), DOCX).title == "Budget Overview"


def test_docx_core_properties_title_wins() -> None:
    assert extract(make_docx(core_title="  Official   Title "), DOCX).title == "Official Title"


def test_docx_merged_cells_appear_once() -> None:
    document = docx.Document()
    table = document.add_table(rows=1, cols=3)
    merged = table.cell(0, 0).merge(table.cell(0, 1))
    merged.text = "Wide"
    table.cell(0, 2).text = "Narrow"
    buffer = io.BytesIO()
    document.save(buffer)
    assert extract(buffer.getvalue(), DOCX).text == "Wide | Narrow"


def test_empty_docx_has_no_extractable_text() -> None:
    buffer = io.BytesIO()
    docx.Document().save(buffer)
    with pytest.raises(ExtractionError, match="no extractable text"):
        extract(buffer.getvalue(), DOCX)


def test_zip_that_is_not_docx_is_an_extraction_error() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hello")
    with pytest.raises(ExtractionError, match="Word document"):
        extract(buffer.getvalue(), DOCX)


def test_truncated_docx_is_an_extraction_error() -> None:
    data = make_docx()
    with pytest.raises(ExtractionError, match="Word document"):
        extract(data[: len(data) // 2], DOCX)


# --- HTML --------------------------------------------------------------------------------------

PAGE = b"""<!DOCTYPE html>
<html>
<head>
  <title>  Pelican
     Report </title>
  <style>body { color: red; } .secret-style {}</style>
  <script>var secretScript = "do not index";</script>
</head>
<body>
  <noscript>Enable JavaScript, secret noscript</noscript>
  <template><p>secret template</p></template>
  <h1>Main heading</h1>
  <p>First   paragraph
     spans <b>several</b>  lines &amp; entities.</p>
  <div>Block one<div>Nested block</div>tail text</div>
  <p>Line one<br>Line two</p>
  <ul><li>Apple</li><li>Pear</li></ul>
  <table><tr><td>Name</td> <td>Age</td></tr><tr><td>Ada</td><td>36</td></tr></table>
  <p hidden>secret hidden</p>
  <script>console.log("secret again")</script>
</body>
</html>"""


def test_html_drops_scripts_styles_and_hidden_content() -> None:
    extracted = extract(PAGE, HTML)
    assert_normalised(extracted)
    assert "secret" not in extracted.text.lower()
    assert "color" not in extracted.text


def test_html_blocks_become_paragraphs_and_whitespace_collapses() -> None:
    paragraphs = extract(PAGE, HTML).text.split("\n\n")
    assert paragraphs == [
        "Main heading",
        "First paragraph spans several lines & entities.",
        "Block one",
        "Nested block",
        "tail text",
        "Line one\nLine two",
        "Apple",
        "Pear",
        "Name | Age",
        "Ada | 36",
    ]


def test_html_title_from_title_element_then_first_h1() -> None:
    assert extract(PAGE, HTML).title == "Pelican Report"
    assert extract(b"<h1>Only <i>a</i> heading</h1><p>Body.</p>", HTML).title == "Only a heading"
    assert extract(b"<p>No title at all.</p>", HTML).title is None


def test_html_meta_charset_is_honoured() -> None:
    page = (
        '<html><head><meta charset="windows-1252"></head><body><p>Caf\u00e9 \u201cquoted\u201d</p>'
    )
    assert extract(page.encode("cp1252"), HTML).text == "Caf\u00e9 \u201cquoted\u201d"


def test_html_that_is_valid_utf8_ignores_a_wrong_meta_charset() -> None:
    page = '<meta charset="iso-8859-1"><p>Caf\u00e9</p>'.encode()
    assert extract(page, HTML).text == "Caf\u00e9"


def test_html_with_only_scripts_has_no_extractable_text() -> None:
    with pytest.raises(ExtractionError, match="no extractable text"):
        extract(b"<html><script>var x = 1;</script><style>p{}</style></html>", HTML)


def test_deeply_nested_html_does_not_hit_the_recursion_limit() -> None:
    page = b"<div>" * 5000 + b"deep text" + b"</div>" * 5000
    assert extract(page, HTML).text == "deep text"


# --- markdown and plain text -------------------------------------------------------------------


def test_markdown_is_kept_as_written_with_its_first_heading_as_title() -> None:
    source = (
        "Intro line.\n\n```bash\n# not a heading, a shell comment\n```\n\n"
        "# Real Title #\n\nSome *emphasis* and a [link](https://example.org).\n\n## Sub\n"
    )
    extracted = extract(source.encode(), MARKDOWN)
    assert extracted.text == source.strip()
    assert extracted.title == "Real Title"


def test_markdown_without_heading_has_no_title() -> None:
    assert extract(b"Just text, *no* heading.", MARKDOWN).title is None


def test_plain_text_utf8() -> None:
    extracted = extract("Gr\u00fc\u00dfe aus M\u00fcnchen.\n".encode(), PLAIN)
    assert extracted == Extracted(text="Gr\u00fc\u00dfe aus M\u00fcnchen.", title=None)


def test_plain_text_latin1() -> None:
    text = "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, d\u00e9j\u00e0 vu \u00e0 No\u00ebl."
    assert extract(text.encode("latin-1"), PLAIN).text == text


def test_plain_text_with_utf8_bom_loses_the_bom() -> None:
    assert extract(b"\xef\xbb\xbfHello BOM", PLAIN).text == "Hello BOM"


def test_plain_text_utf16_with_bom() -> None:
    assert extract("Hello UTF-16 \u00e9".encode("utf-16"), PLAIN).text == "Hello UTF-16 \u00e9"


def test_plain_text_is_normalised() -> None:
    raw = b"  line one\r\nline two   \r\n\r\n\r\n\r\n\r\nsecond\x00 para\n\n\n\nthird\rpara\n  "
    extracted = extract(raw, PLAIN)
    assert_normalised(extracted)
    assert extracted.text == "line one\nline two\n\nsecond para\n\nthird\npara"


@pytest.mark.parametrize("content_type", [PLAIN, MARKDOWN, HTML, PDF, DOCX])
def test_empty_input_is_an_extraction_error(content_type: str) -> None:
    with pytest.raises(ExtractionError):
        extract(b"", content_type)


def test_whitespace_only_text_has_no_extractable_text() -> None:
    with pytest.raises(ExtractionError, match="no extractable text"):
        extract(b" \n\t\r\n ", PLAIN)


def test_unknown_content_type_is_an_extraction_error() -> None:
    with pytest.raises(ExtractionError, match="image/png"):
        extract(b"\x89PNG\r\n\x1a\n", "image/png")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.sampled_from(SUPPORTED_TYPES), st.booleans())
def test_any_bytes_give_text_or_an_extraction_error(
    data: bytes, content_type: str, pdf_magic: bool
) -> None:
    if pdf_magic:
        data = b"%PDF-1.4\n" + data
    try:
        extracted = extract(data, content_type)
    except ExtractionError:  # any other exception fails the test
        return
    assert_normalised(extracted)
