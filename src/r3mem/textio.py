"""Reading user text files strictly, so bad input fails before any model loads."""

from __future__ import annotations

from pathlib import Path

from r3mem.errors import InvalidInput


def read_text_file(path: str | Path) -> str:
    """Return the file's text; refuse missing, non-UTF-8 or empty files with one clear line."""
    source = Path(path)
    if source.is_dir():
        raise InvalidInput(f"{source} is a directory, not a text file")
    if not source.is_file():
        raise InvalidInput(f"no such file: {source}")
    data = source.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from exc
    if not text.strip():
        raise InvalidInput(f"nothing to compress: {source} is empty")
    return text


def read_corpus_text(path: str | Path) -> str:
    """A data set's text file as it is: UTF-8 (BOM dropped), else Latin-1, CRLF as LF.

    Unlike `read_text_file` (user input, strict), corpora are read leniently: a few
    Gutenberg files predate UTF-8, and Latin-1 decodes any byte.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n")
