"""Export archives: a portable, checksummed copy of a namespace's records.

An archive is a tar file with exactly two members, read by name and never extracted
to disk (so no member path can escape anywhere): `manifest.json` (format, version,
count, SHA-256 of the records) and `records.jsonl` (one record per line, tensors in
base64). Reading checks the archive's size, its digest and every record's checksums
before anything is returned, so an import is all or nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path

from r3mem.errors import InvalidInput
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record

FORMAT = "r3mem-archive"
VERSION = 1
MAX_ARCHIVE_BYTES = 1 << 30  # 1 GiB: far above a namespace's records, far below the disk
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


def _member(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    info = tar.getmember(name)
    if not info.isfile() or info.size > limit:
        raise InvalidInput(f"archive member {name} is not a regular file within {limit} bytes")
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file always has one
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"archive member {name} is larger than {limit} bytes")
    return data


def read(path: Path, max_bytes: int = MAX_ARCHIVE_BYTES) -> list[Record]:
    """Every record of the archive, verified; raises InvalidInput on anything else."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidInput(f"cannot read archive {path}: {exc.strerror}") from exc
    if size > max_bytes:
        raise InvalidInput(f"archive {path} is {size} bytes; the limit is {max_bytes}")
    try:
        with tarfile.open(path, mode="r:*") as tar:
            names = sorted(m.name for m in tar.getmembers())
            if names != sorted(_MEMBERS):
                raise InvalidInput(f"archive {path} must hold exactly {', '.join(_MEMBERS)}; it holds {names}")
            manifest = json.loads(_member(tar, "manifest.json", 1 << 20))
            body = _member(tar, "records.jsonl", max_bytes)
    # ValueError: JSON that does not parse or is not UTF-8; RecursionError: JSON nested past the
    # parser's depth. A crafted manifest must be refused like any other bad archive.
    except (tarfile.TarError, EOFError, OSError, ValueError, RecursionError, KeyError) as exc:
        raise InvalidInput(f"{path} is not a readable r3mem archive: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InvalidInput(f"{path} is not an r3mem archive of version {VERSION}")
    if hashlib.sha256(body).hexdigest() != manifest.get("records_sha256"):
        raise InvalidInput(f"archive {path}: records checksum mismatch (corrupt or edited)")
    records = []
    try:
        for line in body.decode().splitlines():
            record = _from_json(json.loads(line))
            record.verify()
            records.append(record)
    except Exception as exc:  # any malformed line refuses the whole archive
        raise InvalidInput(f"archive {path}: bad record: {exc}") from exc
    if len(records) != manifest.get("count"):
        raise InvalidInput(f"archive {path}: manifest says {manifest.get('count')} records, found {len(records)}")
    return records
