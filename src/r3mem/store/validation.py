"""What the store accepts: one set of checks for `add`, `update` and every imported record.

The service's schemas check shapes and types; meaning is checked here, once, so an add over
HTTP, from the CLI, from Python and an imported archive are refused for the same reasons with
the same messages. An imported record is checked as if it had been added (id, text, metadata,
times), plus what only an archive can get wrong: a memory or key that does not fit the model
that will read it, and segment lengths that would make expansion generate without bound.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING

from r3mem.errors import InvalidInput
from r3mem.store.namespace import ID_PATTERN

if TYPE_CHECKING:  # a record's module imports torch; the service's schemas import this one
    from r3mem.store.record import Record

MAX_TEXT_CHARS = 200_000  # one add; longer histories go in several adds (or a file per document)
MAX_METADATA_BYTES = 16_384
# Far deeper than any real metadata, far shallower than the JSON parser's recursion limit.
MAX_METADATA_DEPTH = 32
# A stored record's metadata is the caller's plus its level's own keys ("kind", "role").
RECORD_METADATA_BYTES = MAX_METADATA_BYTES + 256
# Without a model to ask: the largest memory a checkpoint can have (MemoryConfig bounds m by the
# segment length) and the longest segment expansion may be asked to generate.
MAX_SEGMENT_TOKENS = 4096
MAX_MEMORY_TOKENS = 4096
MAX_HIDDEN_SIZE = 65_536
MAX_KEY_BYTES = 2 * MAX_HIDDEN_SIZE
MAX_FINGERPRINT_CHARS = 256
_ID = re.compile(ID_PATTERN)


def check_text(text: object, what: str = "text") -> str:
    """`text` if it is non-empty, valid Unicode text within the size limit; else InvalidInput."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string")
    if not text.strip():
        raise InvalidInput(f"{what} is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"{what} has {len(text)} characters; the limit for one add is {MAX_TEXT_CHARS}")
    if "\x00" in text:
        raise InvalidInput(f"{what} contains NUL bytes: binary data is not text")
    _check_unicode(text, what)
    return text


def _check_unicode(text: str, what: str) -> None:
    """A lone surrogate (JSON's "\\ud800") is no character: no tokenizer or database takes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} holds a lone surrogate (U+{ord(text[exc.start]):04X}) at character "
                           f"{exc.start}: it is not valid Unicode text") from exc


def check_json(value: object, where: str, depth: int = 1, strict: bool = True) -> None:
    """Refuse what JSON cannot carry faithfully: NaN and infinities, lone surrogates, nesting past
    `MAX_METADATA_DEPTH`; `strict` also refuses any type JSON does not have (else they are skipped)."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidInput(f"{where} is nested more than {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, str):
        _check_unicode(value, where)
        if "\x00" in value:  # PostgreSQL's text and jsonb refuse it: a 503 later, for a caller's mistake
            raise InvalidInput(f"{where} contains a NUL character")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where} is {value}: JSON has no NaN or infinite numbers")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{where} has a key that is not a string: {key!r}")
            check_json(key, f"{where} key", depth, strict)
            check_json(item, f"{where}.{key}", depth + 1, strict)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json(item, f"{where}[{i}]", depth + 1, strict)
    elif strict and value is not None and not isinstance(value, bool | int | float):
        raise InvalidInput(f"{where} holds a {type(value).__name__}, which is not JSON")


def check_metadata(metadata: object, limit: int = MAX_METADATA_BYTES) -> dict:
    """`metadata` (None: {}) if it is a JSON object within the size and depth limits."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object")
    check_json(metadata, "metadata")  # before dumping: a deep object would overflow the encoder
    size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False).encode())
    if size > limit:
        raise InvalidInput(f"metadata is {size} bytes; the limit is {limit}")
    return metadata


def check_id(value: object, what: str = "id") -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidInput(f"{what} {str(value)[:40]!r} is not valid: use 1-128 letters, digits or _.@:+- "
                           "starting with a letter or digit")
    return value


def check_time(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidInput(f"{what} must be a finite, non-negative Unix time, got {value!r}")
    return float(value)


def check_record(record: Record, hidden_size: int | None = None, max_memory_tokens: int | None = None,
                 segment_len: int | None = None) -> None:
    """Refuse a record that `add` could not have written; with the loaded model's sizes, also a
    memory that model cannot read (`hidden_size`, `max_memory_tokens`, `segment_len`)."""
    check_id(record.id, "record id")
    if record.parent_id is not None:
        check_id(record.parent_id, f"record {record.id}: parent_id")
    if record.text is not None:
        check_text(record.text, f"record {record.id}: text")
    check_metadata(record.metadata, RECORD_METADATA_BYTES)
    check_time(record.created_at, f"record {record.id}: created_at")
    check_time(record.updated_at, f"record {record.id}: updated_at")
    for name in ("model_fingerprint", "checkpoint_fingerprint"):
        value = getattr(record, name)
        if not isinstance(value, str) or len(value) > MAX_FINGERPRINT_CHARS:
            raise InvalidInput(f"record {record.id}: {name} must be a string of at most {MAX_FINGERPRINT_CHARS}")
    if record.pending:
        if record.segment_tokens:
            raise InvalidInput(f"record {record.id}: a record without memory has no segments")
        return
    _check_memory(record, hidden_size, max_memory_tokens or MAX_MEMORY_TOKENS, segment_len or MAX_SEGMENT_TOKENS)


def _check_memory(record: Record, hidden_size: int | None, max_memory_tokens: int, segment_len: int) -> None:
    shape, tokens = record.memory_shape, record.segment_tokens
    where = f"record {record.id}"
    if len(shape) != 3:
        raise InvalidInput(f"{where}: memory shape {list(shape)} is not (segments, memory tokens, hidden size)")
    segments, m, d = shape
    if d != (hidden_size or d) or not 1 <= d <= MAX_HIDDEN_SIZE:
        raise InvalidInput(f"{where}: memory vectors have {d} dimensions; the model's have {hidden_size}")
    if not 1 <= m <= max_memory_tokens:
        raise InvalidInput(f"{where}: memory has {m} vectors per segment; the model allows 1 to {max_memory_tokens}")
    if not isinstance(tokens, list) or len(tokens) != segments:
        raise InvalidInput(f"{where}: segment_tokens must list one count per memory segment ({segments})")
    if segments * segment_len > 4 * MAX_TEXT_CHARS:
        raise InvalidInput(f"{where}: {segments} segments is more than one add can make")
    for count in tokens:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= segment_len:
            raise InvalidInput(f"{where}: a segment's token count must be from 1 to {segment_len}, got {count!r}")
    if len(record.key) > MAX_KEY_BYTES:
        raise InvalidInput(f"{where}: its retrieval key has {len(record.key)} bytes; the limit is {MAX_KEY_BYTES}")
