"""Real documents of every supported type, made by the libraries that write them."""

from __future__ import annotations

import io

from docx import Document as DocxDocument
from fpdf import FPDF


def make_pdf(text: str, *, title: str = "A test PDF") -> bytes:
    pdf = FPDF()
    pdf.set_title(title)
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def make_docx(text: str, *, heading: str = "A test document") -> bytes:
    document = DocxDocument()
    document.add_heading(heading, level=1)
    for paragraph in text.split("\n\n"):
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_html(text: str, *, title: str = "A test page") -> bytes:
    body = "".join(f"<p>{paragraph}</p>" for paragraph in text.split("\n\n"))
    return (
        "<!doctype html><html><head>"
        f"<title>{title}</title><style>p {{ color: red; }}</style>"
        "<script>var secretScript = 1;</script>"
        f"</head><body><h1>{title}</h1>{body}</body></html>"
    ).encode()


def make_markdown(text: str, *, title: str = "A test note") -> bytes:
    return f"# {title}\n\n{text}\n\n- a list item\n- another item\n".encode()
