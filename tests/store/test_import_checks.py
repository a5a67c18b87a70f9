"""Import is checked like add, stays in the importer's namespace, and reads archives within bounds.

Each crafted archive carries valid checksums (they are unkeyed, so an attacker can compute
them): what refuses it is the check under test, not damage.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import tarfile
import time
from dataclasses import replace

import pytest

from r3mem.errors import DuplicateRecord, InvalidInput
from r3mem.store import Namespace, archive
from r3mem.store.filters import RecallFilter
from r3mem.store.record import Record

ALICE, BOB = Namespace(user="alice"), Namespace(user="bob")
ALICE_TEXT = "Alice keeps a green teapot. She drinks tea at noon.\n\nHer cat is called Miso."
BOB_TEXT = "Bob hides the zebra code 4417 under his desk."


def crafted(record: Record, **changes) -> Record:
    """`record` with `changes` and checksums recomputed over them, as an attacker would."""
    return replace(record, **changes, memory_checksum="", checksum="")


def one_record(store) -> Record:
    """A genuine, fully written record of alice's (then removed, so its id is free again)."""
    record = store.add(ALICE, messages=[{"role": "user", "content": "I like green tea."}], store_text=True)[0]
    store.flush()
    written = store.get(record.id, ALICE)
    store.delete(record.id, ALICE)
    return written


def test_another_namespaces_parent_is_refused_and_never_cascades(store, tmp_path):
    bob_doc = store.add(BOB, text=BOB_TEXT)[0]
    alice = crafted(one_record(store), parent_id=bob_doc.id)
    path = tmp_path / "a.tar.gz"
    archive.write([alice], ALICE, path)
    missing = tmp_path / "m.tar.gz"
    archive.write([crafted(alice, parent_id="f" * 32)], ALICE, missing)
    with pytest.raises(InvalidInput, match="parent") as foreign:
        store.import_(path, scope=ALICE)
    with pytest.raises(InvalidInput, match="parent") as absent:
        store.import_(missing, scope=ALICE)
    # the same words for bob's id as for an id nobody holds, but for the id itself
    assert str(foreign.value).replace(bob_doc.id, "ID") == str(absent.value).replace("f" * 32, "ID")
    assert store.stats(ALICE)["records"] == 0


def test_delete_cascades_only_inside_the_namespace(store):
    """Even a cross-namespace child written straight into the backend is not reached by bob's delete."""
    bob_doc = store.add(BOB, text=BOB_TEXT)[0]
    alice = crafted(one_record(store), parent_id=bob_doc.id)
    store.backend.insert([alice], op="import")
    deleted = store.delete(bob_doc.id, BOB)
    assert alice.id not in deleted
    assert store.get(alice.id, ALICE).id == alice.id
    assert [e.op for e in store.history(alice.id, ALICE)][-1] == "import"
    with pytest.raises(Exception, match="no record"):
        store.history(alice.id, BOB)


def test_an_id_another_namespace_holds_imports_like_a_free_one(store, tmp_path):
    bob_doc = store.add(BOB, text=BOB_TEXT)[0]
    template = one_record(store)
    answers = {}
    for name, record_id in (("free", "0" * 32), ("bobs", bob_doc.id)):
        path = tmp_path / f"{name}.tar.gz"
        archive.write([crafted(template, id=record_id)], ALICE, path)
        answers[name] = store.import_(path, scope=ALICE)
    assert answers["free"] == answers["bobs"] == 1
    assert store.get(bob_doc.id, BOB).text == BOB_TEXT  # bob's record untouched
    assert len(store.list(ALICE)) == 2
    # alice's own ids are hers to be told about
    path = tmp_path / "again.tar.gz"
    archive.write([crafted(template, id="0" * 32)], ALICE, path)
    with pytest.raises(DuplicateRecord):
        store.import_(path, scope=ALICE)


def _refused_changes(record: Record) -> dict[str, dict]:
    return {
        "long id": {"id": "a" * 10_000},
        "traversal id": {"id": "../../etc/passwd"},
        "NUL id": {"id": "abc\x00def"},
        "bad parent id": {"parent_id": "../x"},
        "huge text": {"text": "word " * 200_000},
        "NUL text": {"text": "bin\x00ary"},
        "empty text": {"text": "  "},
        "huge metadata": {"metadata": {"blob": "x" * 200_000}},
        "deep metadata": {"metadata": json.loads('{"a":' * 100 + "1" + "}" * 100)},
        "NaN metadata": {"metadata": {"score": math.nan}},
        "inf metadata": {"metadata": {"score": [math.inf]}},
        "NaN created_at": {"created_at": math.nan},
        "inf updated_at": {"updated_at": math.inf},
        "memory of the wrong width": {"memory": bytes(14), "memory_shape": (1, 1, 7), "segment_tokens": [3]},
        "too many memory vectors": {"memory": bytes(2 * 999 * 64), "memory_shape": (1, 999, 64),
                                    "segment_tokens": [3]},
        "unbounded segment": {"segment_tokens": [10**9] * len(record.segment_tokens)},
        "segments not matching": {"segment_tokens": [*record.segment_tokens, 1]},
        "huge fingerprint": {"checkpoint_fingerprint": "f" * 100_000},
    }


def test_import_applies_every_check_add_applies(store, tmp_path):
    template = one_record(store)
    assert template.memory_shape[2] == 64  # the tiny model's width
    for case, changes in _refused_changes(template).items():
        path = tmp_path / "case.tar.gz"
        archive.write([crafted(template, **changes)], ALICE, path)
        with pytest.raises(InvalidInput):
            store.import_(path, scope=ALICE)
        assert store.stats(ALICE)["records"] == 0, case
    path = tmp_path / "ok.tar.gz"
    archive.write([template], ALICE, path)
    assert store.import_(path, scope=ALICE) == 1  # the template itself is fine
    assert store.recall("tea", ALICE, method="memory")  # and memory recall still works


def test_add_refuses_nan_deep_and_surrogate_input_like_import(store):
    for metadata in ({"x": math.nan}, {"x": -math.inf}, json.loads('{"a":' * 100 + "1" + "}" * 100),
                     {"k\udc80": 1}, {"v": "\ud800"}):
        with pytest.raises(InvalidInput, match="metadata"):
            store.add(ALICE, text="A note.", metadata=metadata)
    with pytest.raises(InvalidInput, match="surrogate"):
        store.add(ALICE, text="tea \ud800")
    with pytest.raises(InvalidInput, match="surrogate"):
        store.recall("tea \udfff", ALICE)
    for value in ("\ud800", "a\x00b"):  # the CLI's --where and the library reach no database with them
        with pytest.raises(InvalidInput, match="metadata filter"):
            RecallFilter.of({"k": value})
    assert store.stats(ALICE)["records"] == 0


def _tar_gz(members: list[tuple[str, bytes, int]], kind: bytes = tarfile.REGTYPE) -> bytes:
    """A tar.gz whose headers declare `size` for each member, whatever the payload really is."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as gz:
        for name, payload, size in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.type = size, 0o644, int(time.time()), kind
            gz.write(info.tobuf(format=tarfile.GNU_FORMAT))
            gz.write(payload)
            remaining = size - len(payload)
            chunk = b"\0" * (1 << 20)
            while remaining > 0:
                gz.write(chunk[: min(remaining, len(chunk))])
                remaining -= len(chunk)
            gz.write(b"\0" * (-size % 512))
        gz.write(b"\0" * 1024)
    return out.getvalue()


@pytest.fixture
def inflated(monkeypatch) -> list[int]:
    """Bytes gzip has inflated so far (tarfile and the archive reader both inflate through it)."""
    total = [0]
    read = gzip._GzipReader.read  # type: ignore[attr-defined]

    def counted(self, size=-1):
        data = read(self, size)
        total[0] += len(data)
        return data

    monkeypatch.setattr(gzip._GzipReader, "read", counted)  # type: ignore[attr-defined]
    return total


def test_a_small_archive_declaring_a_huge_member_is_refused_at_once(tmp_path, inflated):
    manifest = json.dumps({"format": archive.FORMAT, "version": archive.VERSION, "count": 1,
                           "records_sha256": "0" * 64}).encode()
    # 256 MiB of zeros gzip to about 1 MiB; the header says so, and that is all it takes to refuse
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(_tar_gz([("manifest.json", manifest, len(manifest)), ("records.jsonl", b"", 256 << 20)]))
    assert bomb.stat().st_size < 4 << 20
    with pytest.raises(InvalidInput, match="within"):
        archive.read(bomb, max_bytes=64 << 20)
    assert inflated[0] < 1 << 20  # the headers and the manifest, not the member
    # a pax header is read whole before any member: only the cap on inflated bytes stops it
    pax = tmp_path / "pax.tar.gz"
    pax.write_bytes(_tar_gz([("././@PaxHeader", b"", 96 << 20)], kind=tarfile.XHDTYPE))
    inflated[0] = 0
    with pytest.raises(InvalidInput):
        archive.read(pax, max_bytes=8 << 20)
    assert inflated[0] < 12 << 20


def test_archive_record_count_is_capped(store, tmp_path):
    store.add(ALICE, text=ALICE_TEXT)
    path = tmp_path / "a.tar.gz"
    count = store.export(ALICE, path)
    assert count > 2
    with pytest.raises(InvalidInput, match="count"):
        archive.read(path, max_records=2)
    assert len(archive.read(path, max_records=count)) == count


def test_a_cycle_of_parents_is_refused_and_cannot_hang_a_delete(store, tmp_path):
    template = one_record(store)
    a, b = crafted(template, id="a" * 32, parent_id="b" * 32), crafted(template, id="b" * 32, parent_id="a" * 32)
    for records in ([a, b], [crafted(template, id="c" * 32, parent_id="c" * 32)]):
        path = tmp_path / "cycle.tar.gz"
        archive.write(records, ALICE, path)
        with pytest.raises(InvalidInput, match="lead back"):
            store.import_(path, scope=ALICE)
    store.backend.insert([a, b], op="import")  # as a row damaged or written before these checks
    assert sorted(store.delete(a.id, ALICE)) == sorted([a.id, b.id])
