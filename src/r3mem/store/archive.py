"""Export archives: a portable, checksummed copy of a namespace's records.

An archive is a gzipped tar file with exactly two members, in this order, read as a stream
and never extracted to disk (so no member path can escape anywhere): `manifest.json`
(format, version, count, SHA-256 of the records) and `records.jsonl` (one record per line,
tensors in base64). Reading bounds the bytes decompressed and the records parsed, and checks
the digest and every record's checksums before anything is returned, so an import is all or
nothing. docs/archive-format.md specifies the format for other tools.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, BinaryIO, cast

from r3mem.errors import InvalidInput
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record

FORMAT = "r3mem-archive"
VERSION = 1
MAX_ARCHIVE_BYTES = 1 << 30  # 1 GiB: far above a namespace's records, far below the disk
MAX_RECORDS = 1_000_000  # ten times the largest store the recall benchmarks measure
MAX_MANIFEST_BYTES = 1 << 20
_SLACK = MAX_MANIFEST_BYTES + (64 << 10)  # the manifest, tar headers and padding beside the records
_MEMBERS = ("manifest.json", "records.jsonl")


def _record_json(record: Record) -> dict:
    return {
        "id": record.id, "namespace": record.namespace.as_dict(), "level": record.level,
        "parent_id": record.parent_id, "memory": base64.b64encode(record.memory).decode(),
        "memory_dtype": record.memory_dtype, "memory_shape": list(record.memory_shape),
        "segment_tokens": record.segment_tokens, "key": base64.b64encode(record.key).decode(), "text": record.text,
        "metadata": record.metadata, "model_fingerprint": record.model_fingerprint,
        "checkpoint_fingerprint": record.checkpoint_fingerprint, "created_at": record.created_at,
        "updated_at": record.updated_at, "memory_checksum": record.memory_checksum, "checksum": record.checksum,
    }


def _from_json(data: dict) -> Record:
    return Record(
        id=data["id"], namespace=Namespace.from_dict(data["namespace"]), level=data["level"],
        parent_id=data["parent_id"], memory=base64.b64decode(data["memory"], validate=True),
        memory_dtype=data["memory_dtype"], memory_shape=tuple(data["memory_shape"]),
        segment_tokens=list(data["segment_tokens"]), key=base64.b64decode(data["key"], validate=True),
        text=data["text"], metadata=data["metadata"], model_fingerprint=data["model_fingerprint"],
        checkpoint_fingerprint=data["checkpoint_fingerprint"], created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]), memory_checksum=data["memory_checksum"], checksum=data["checksum"],
    )


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(payload))


def write(records: list[Record], namespace: Namespace, path: Path) -> int:
    """Write the archive atomically (temp file + rename); returns the record count."""
    body = "".join(json.dumps(_record_json(r), sort_keys=True, ensure_ascii=False) + "\n" for r in records).encode()
    manifest = {"format": FORMAT, "version": VERSION, "namespace": namespace.as_dict(), "count": len(records),
                "records_sha256": hashlib.sha256(body).hexdigest(), "created_at": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_member(tar, "manifest.json", json.dumps(manifest, sort_keys=True).encode())
            _add_member(tar, "records.jsonl", body)
        with open(tmp, "rb") as done:
            os.fsync(done.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(records)


class _Capped(io.RawIOBase):
    """The decompressed stream, refused the moment it passes `limit` bytes: a small archive that
    inflates without bound (a bomb, a huge pax header) costs at most `limit` bytes of work."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self.inner, self.limit, self.seen = inner, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.seen += len(data)
        if self.seen > self.limit:
            raise InvalidInput(f"archive unpacks to more than {self.limit} bytes")
        buffer[: len(data)] = data
        return len(data)


def _open(raw: BinaryIO, limit: int) -> BinaryIO:
    """The tar stream inside `raw`: gzip-compressed (what `write` makes) or plain."""
    magic = raw.read(2)
    raw.seek(0)
    inner = cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb")) if magic == b"\x1f\x8b" else raw
    return cast(BinaryIO, io.BufferedReader(_Capped(inner, limit), 1 << 16))


def _next(tar: tarfile.TarFile, name: str, limit: int) -> tuple[tarfile.TarInfo, IO[bytes]]:
    """The archive's next member, which must be the regular file `name` within `limit` bytes;
    its declared size is checked before a byte of it is read."""
    info = tar.next()
    if info is None or info.name != name:
        raise InvalidInput(f"an archive must hold exactly {', '.join(_MEMBERS)}, in that order; "
                           f"found {info.name if info else 'nothing'!r} where {name} belongs")
    if not info.isfile() or info.size > limit:
        raise InvalidInput(f"archive member {name} is not a regular file within {limit} bytes")
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file always has one
    return info, handle


def _manifest(tar: tarfile.TarFile, max_records: int) -> dict:
    _, handle = _next(tar, "manifest.json", MAX_MANIFEST_BYTES)
    manifest = json.loads(handle.read(MAX_MANIFEST_BYTES))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InvalidInput(f"not an r3mem archive of version {VERSION}")
    count = manifest.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= max_records:
        raise InvalidInput(f"the manifest's count must be a whole number from 0 to {max_records}, got {count!r}")
    return manifest


def _records(handle: IO[bytes], size: int, max_records: int) -> tuple[list[Record], str]:
    """Every line of records.jsonl as a verified record, and the SHA-256 of the member."""
    digest, records, left = hashlib.sha256(), list[Record](), size
    while left > 0:
        line = handle.readline(left)
        if not line:
            break
        left -= len(line)
        digest.update(line)
        if not line.strip():
            continue
        if len(records) == max_records:
            raise InvalidInput(f"the archive holds more than {max_records} records")
        try:
            record = _from_json(json.loads(line))
            record.verify()
        except Exception as exc:  # any malformed line refuses the whole archive
            raise InvalidInput(f"bad record on line {len(records) + 1}: {exc}") from exc
        records.append(record)
    return records, digest.hexdigest()


def read(path: Path, max_bytes: int = MAX_ARCHIVE_BYTES, max_records: int = MAX_RECORDS) -> list[Record]:
    """Every record of the archive, verified; raises InvalidInput on anything else.

    Read as a stream, in order, never extracted: `max_bytes` bounds the file, the records member
    and everything decompressed (the member's declared size is refused before it is read), and
    `max_records` the number of records.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInput(f"cannot read archive {path}: {exc.strerror}") from exc
    if size > max_bytes:
        raise InvalidInput(f"archive {path} is {size} bytes; the limit is {max_bytes}")
    try:
        with path.open("rb") as raw, tarfile.open(fileobj=_open(raw, max_bytes + _SLACK), mode="r|") as tar:
            manifest = _manifest(tar, max_records)
            info, handle = _next(tar, "records.jsonl", max_bytes)
            records, digest = _records(handle, info.size, max_records)
            extra = tar.next()
            if extra is not None:
                raise InvalidInput(f"the archive must hold only {', '.join(_MEMBERS)}; it also holds {extra.name!r}")
    except InvalidInput as exc:
        raise InvalidInput(f"archive {path}: {exc}") from exc
    # ValueError: JSON that does not parse or is not UTF-8; RecursionError: JSON nested past the
    # parser's depth. A crafted manifest must be refused like any other bad archive.
    except (tarfile.TarError, EOFError, OSError, ValueError, RecursionError, KeyError) as exc:
        raise InvalidInput(f"{path} is not a readable r3mem archive: {exc}") from exc
    if digest != manifest.get("records_sha256"):
        raise InvalidInput(f"archive {path}: records checksum mismatch (corrupt or edited)")
    if len(records) != manifest["count"]:
        raise InvalidInput(f"archive {path}: manifest says {manifest['count']} records, found {len(records)}")
    return records
