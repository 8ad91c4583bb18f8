"""Hostile files and misbehaving parsers, for the sandbox tests and the end-to-end poison tests.

Generators return the file's bytes. Each is deterministic (seeded) and cheap: the zip bombs are
written as raw deflate blocks, so a 1 GiB bomb costs about 1 MB and a second to make.

The ``*_fake`` functions stand in for ``spine.pipeline.extract.extract`` in an
``ExtractionSandbox(target=...)``. They misbehave only when given ``TRIGGER`` as the file and
extract anything else normally, so a test can check that the same sandbox still works after
the fault. They must stay module-level functions: the sandbox's child imports them by name.
"""

from __future__ import annotations

import io
import os
import random
import resource
import signal
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from docx import Document as DocxDocument

from spine.errors import ExtractionError
from spine.pipeline.detect import DOCX, HTML, PDF, PLAIN
from spine.pipeline.extract import Extracted, extract
from support.documents import make_pdf

MIB = 1024 * 1024
GIB = 1024 * MIB

#: The input on which the fakes misbehave.
TRIGGER = b"hostile file"

# --- misbehaving parsers -----------------------------------------------------------------------


def hang_forever_fake(data: bytes, content_type: str) -> Extracted:
    """A parser caught in an endless loop."""
    if data != TRIGGER:
        return extract(data, content_type)
    while True:
        time.sleep(0.5)


def crash_with_segfault_fake(data: bytes, content_type: str) -> Extracted:
    """A parser that dereferences a bad pointer."""
    if data != TRIGGER:
        return extract(data, content_type)
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)  # the signal is delivered before this ends
    raise AssertionError("still alive after SIGSEGV")


def allocate_too_much_fake(data: bytes, content_type: str) -> Extracted:
    """A parser whose memory grows without bound (64 MiB at a time, up to 64 GiB)."""
    if data != TRIGGER:
        return extract(data, content_type)
    hoard = [bytearray(64 * MIB) for _ in range(1024)]
    return Extracted(text=f"allocated {len(hoard) * 64} MiB: no memory limit", title=None)


def memory_error_in_parser_fake(data: bytes, content_type: str) -> Extracted:
    """What ``extract`` does with a MemoryError inside a parser: wraps it."""
    if data != TRIGGER:
        return extract(data, content_type)
    try:
        raise MemoryError
    except MemoryError as exc:
        raise ExtractionError("cannot read the Word document: ") from exc


def raise_unexpected_fake(data: bytes, content_type: str) -> Extracted:
    """A bug: an exception that is not an ExtractionError escapes."""
    if data != TRIGGER:
        return extract(data, content_type)
    raise RuntimeError("parser bug")


def exit_fake(data: bytes, content_type: str) -> Extracted:
    """A library that ends the process."""
    if data != TRIGGER:
        return extract(data, content_type)
    os._exit(3)


def report_limits_fake(data: bytes, content_type: str) -> Extracted:
    """The child's resource limits and pid as text: ``AS CORE CPU PID`` (soft limits)."""
    if data != TRIGGER:
        return extract(data, content_type)
    limits = (
        resource.getrlimit(resource.RLIMIT_AS)[0],
        resource.getrlimit(resource.RLIMIT_CORE)[0],
        resource.getrlimit(resource.RLIMIT_CPU)[0],
        os.getpid(),
    )
    return Extracted(text=" ".join(str(value) for value in limits), title=None)


# --- hostile files -----------------------------------------------------------------------------


def make_truncated_pdf() -> bytes:
    """A real PDF cut off before its cross-reference table and trailer."""
    data = make_pdf("Pelicans migrate in spring. " * 40, title="Truncated")
    return data[: len(data) // 2]


def make_corrupt_pdf(size: int = 4096, seed: int = 1) -> bytes:
    """``%PDF-`` followed by random bytes."""
    return b"%PDF-1.7\n" + random.Random(seed).randbytes(size)


def make_random_docx(size: int = 4096, seed: int = 2) -> bytes:
    """A zip local-file-header signature followed by random bytes."""
    return b"PK\x03\x04" + random.Random(seed).randbytes(size)


def make_deeply_nested_html(depth: int = 100_000) -> bytes:
    return (
        b"<!doctype html><html><head><title>Deep</title></head><body>"
        + b"<div>" * depth
        + b"deep text"
        + b"</div>" * depth
        + b"</body></html>"
    )


def make_invalid_utf8(size: int = 8192, seed: int = 3) -> bytes:
    """Bytes that are invalid UTF-8 throughout (lone continuation bytes, overlong and
    out-of-range lead bytes) and read as no legacy code page's text either."""
    invalid = [*range(0x80, 0xC0), 0xC0, 0xC1, *range(0xF5, 0x100)]
    rng = random.Random(seed)
    return b"\x80" + bytes(rng.choice(invalid) for _ in range(size - 1))  # \x80: not a BOM


def _small_docx_members() -> list[tuple[str, bytes]]:
    document = DocxDocument()
    document.add_heading("Bomb", level=1)
    document.add_paragraph("A harmless looking paragraph.")
    buffer = io.BytesIO()
    document.save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


@dataclass(frozen=True)
class _Member:
    name: str
    chunks: Iterable[bytes]  # the member's stored (compressed) bytes
    crc: int
    compressed_size: int
    declared_size: int
    method: int = zipfile.ZIP_DEFLATED


def _deflate(data: bytes, mode: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(mode)


def _write_zip(out: io.BufferedIOBase | io.BytesIO, members: Iterable[_Member]) -> None:
    """A plain (non-ZIP64) zip, written member by member without holding any member whole."""
    central: list[bytes] = []
    offset = 0
    for member in members:
        name = member.name.encode()
        header = struct.pack(
            "<4s5H3L2H",
            b"PK\x03\x04",
            20,
            0,
            member.method,
            0,
            0x21,
            member.crc,
            member.compressed_size,
            member.declared_size,
            len(name),
            0,
        )
        out.write(header + name)
        written = 0
        for chunk in member.chunks:
            out.write(chunk)
            written += len(chunk)
        assert written == member.compressed_size
        central.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                member.method,
                0,
                0x21,
                member.crc,
                member.compressed_size,
                member.declared_size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
        offset += len(header) + len(name) + written
    directory = b"".join(central)
    out.write(directory)
    out.write(
        struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0
        )
    )


def _deflated_member(name: str, data: bytes) -> _Member:
    compressed = _deflate(data, zlib.Z_FINISH)
    return _Member(name, [compressed], zlib.crc32(data), len(compressed), len(data))


def _inflating_document(padding: int, *, declared_size: int | None = None) -> _Member:
    """word/document.xml of a real docx, with ``padding`` spaces after ``<w:body>``: valid
    XML that expands to ``padding`` bytes and more, from ~1 KB of deflate per MiB."""
    original = dict(_small_docx_members())["word/document.xml"]
    head, tail = original.split(b"<w:body>", 1)
    head += b"<w:body>"
    unit = MIB
    repeats, rest = divmod(padding, unit)
    # Each piece comes from a fresh compressor and ends on a full flush (byte-aligned, no
    # back-references into earlier pieces), so the pieces concatenate into one deflate stream.
    head_deflated = _deflate(head, zlib.Z_FULL_FLUSH)
    unit_deflated = _deflate(b" " * unit, zlib.Z_FULL_FLUSH)
    rest_deflated = _deflate(b" " * rest, zlib.Z_FULL_FLUSH)
    tail_deflated = _deflate(tail, zlib.Z_FINISH)
    crc = zlib.crc32(head)
    spaces = b" " * unit
    for _ in range(repeats):
        crc = zlib.crc32(spaces, crc)
    crc = zlib.crc32(tail, zlib.crc32(b" " * rest, crc))

    def chunks() -> Iterator[bytes]:
        yield head_deflated
        for _ in range(repeats):
            yield unit_deflated
        yield rest_deflated
        yield tail_deflated

    size = len(head) + padding + len(tail)
    compressed = (
        len(head_deflated) + repeats * len(unit_deflated) + len(rest_deflated) + len(tail_deflated)
    )
    declared = size if declared_size is None else declared_size
    return _Member("word/document.xml", chunks(), crc, compressed, declared)


def _docx_with(document: _Member, path: Path | None) -> bytes:
    members = [
        document if name == "word/document.xml" else _deflated_member(name, data)
        for name, data in _small_docx_members()
    ]
    buffer = io.BytesIO()
    _write_zip(buffer, members)
    data = buffer.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def make_zip_bomb_docx(uncompressed_bytes: int = GIB, *, path: Path | None = None) -> bytes:
    """A valid .docx whose word/document.xml inflates to ``uncompressed_bytes`` (default
    1 GiB, from ~1 MB). Its central directory is honest; written to ``path`` if given."""
    return _docx_with(_inflating_document(uncompressed_bytes), path)


def make_lying_zip_bomb_docx(uncompressed_bytes: int = GIB, *, path: Path | None = None) -> bytes:
    """Like ``make_zip_bomb_docx``, but the zip declares word/document.xml at 4 KiB: a size
    check of the central directory passes, the deflate stream still holds the whole bomb."""
    return _docx_with(_inflating_document(uncompressed_bytes, declared_size=4096), path)


def make_many_members_docx(count: int = 10_001) -> bytes:
    """A real docx plus ``count`` empty files: over the 10,000 limit by default."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in _small_docx_members():
            archive.writestr(name, data)
        for index in range(count):
            archive.writestr(f"word/padding/part{index}.xml", b"")
    return buffer.getvalue()


def make_bzip2_docx() -> bytes:
    """A real docx recompressed with bzip2, a method Word never writes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_BZIP2) as archive:
        for name, data in _small_docx_members():
            archive.writestr(name, data)
    return buffer.getvalue()


@dataclass(frozen=True)
class HostileFile:
    """A poison file: the name and type to upload it with, and words its failure reason has.

    ``data`` is made on first use (the bombs take about half a second each).
    """

    name: str
    filename: str
    content_type: str
    make: Callable[[], bytes]
    reason_words: tuple[str, ...]

    @cached_property
    def data(self) -> bytes:
        return self.make()


#: The poison set of issue 3, item 4: each must fail with a reason and harm nothing else.
HOSTILE_FILES: tuple[HostileFile, ...] = (
    HostileFile("truncated-pdf", "truncated.pdf", PDF, make_truncated_pdf, ("PDF", "damaged")),
    HostileFile("corrupt-pdf", "corrupt.pdf", PDF, make_corrupt_pdf, ("PDF", "damaged")),
    HostileFile(
        "random-behind-zip-magic",
        "random.docx",
        DOCX,
        make_random_docx,
        ("Word document", "damaged"),
    ),
    HostileFile("zip-bomb-docx", "bomb.docx", DOCX, make_zip_bomb_docx, ("zip bomb", "expands")),
    HostileFile(
        "lying-zip-bomb-docx",
        "liar.docx",
        DOCX,
        make_lying_zip_bomb_docx,
        ("Word document", "damaged"),
    ),
    HostileFile(
        "many-members-docx",
        "many.docx",
        DOCX,
        make_many_members_docx,
        ("zip bomb", "files, more than 10,000"),
    ),
    HostileFile(
        "deeply-nested-html",
        "deep.html",
        HTML,
        make_deeply_nested_html,
        ("nests", "levels deep"),
    ),
    HostileFile("invalid-utf8-text", "invalid.txt", PLAIN, make_invalid_utf8, ("cannot decode",)),
    HostileFile("invalid-utf8-html", "invalid.html", HTML, make_invalid_utf8, ("cannot decode",)),
)
