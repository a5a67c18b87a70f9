"""Properties over arbitrary input: the splitter never breaks its offsets, and every reader of
untrusted bytes (archives, .r3m files, checkpoints, namespaces, memory blobs) either returns
exactly what was written or raises the one error type its callers catch, never anything else.

Each property bumps `cases_tried`, so the run reports how many cases it actually tried.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import string
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tests.conftest import TINY_MEMORY, tiny_base
from tests.test_hierarchy import assert_tree_ok

from r3mem.api import R3Mem
from r3mem.checkpoint import WEIGHTS_FILE, _file_hash, read_checkpoint
from r3mem.errors import CheckpointError, InvalidInput, MemoryFileError, StoreError
from r3mem.hierarchy import build_tree
from r3mem.memory_file import Memory
from r3mem.store import archive
from r3mem.store.namespace import FIELDS, Namespace
from r3mem.store.record import Record, decode_memory, encode_key, encode_memory

# slow: hypothesis runs thousands of generated cases
pytestmark = pytest.mark.slow

# `cases_tried` is function scoped but only counts, so sharing it across examples is the point.
SHARED_FIXTURE = [HealthCheck.function_scoped_fixture]


def flips(size: int) -> st.SearchStrategy[tuple[int, int]]:
    """(offset, non-zero xor mask): one damaged byte anywhere in a file of `size` bytes."""
    return st.tuples(st.integers(0, size - 1), st.integers(1, 255))


def damaged(data: bytes, cut: int | None, flip: tuple[int, int] | None) -> bytes:
    out = bytearray(data[:cut] if cut is not None else data)
    if flip is not None and flip[0] < len(out):
        out[flip[0]] ^= flip[1]
    return bytes(out)


# --- hierarchy -----------------------------------------------------------------------------
# test_hierarchy.py already runs plain `st.text()`; these pieces aim at the splitter's edges:
# control and format characters, Unicode line/paragraph separators, words far longer than a
# sentence may be, and the punctuation its rules key on.
_EDGES = [". ", "! ", "?\n", "\n\n", "\r\n\r\n", "\u2029", "\u2028", "\x85", "\x0b", "\x0c", "\x1c", "\x1f",
          "Mr. ", "U.S. ", "e.g. ", "1. ", "- ", "• ", "。", "…", "\"", "”) ", "\u200b", "\ufeff", "\x00"]
_PIECES = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]), max_size=8),
    st.text(string.ascii_letters + string.digits, min_size=30, max_size=1500),  # one endless token
    st.sampled_from(_EDGES),
)
DOCUMENTS = st.lists(_PIECES, max_size=25).map("".join)


@settings(max_examples=250, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(text=DOCUMENTS, small=st.booleans())
def test_tree_offsets_hold_for_any_text(cases_tried, text, small):
    cases_tried[0] += 1
    limits = {"max_para": 80, "max_sent": 30} if small else {}
    tree = build_tree(text, max_paragraph_chars=limits.get("max_para", 1200),
                      max_sentence_chars=limits.get("max_sent", 400))
    assert_tree_ok(text, tree, **limits)


# --- namespaces ----------------------------------------------------------------------------
_VALID_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}", fullmatch=True)
_ID_LIKE = st.one_of(
    st.none(), _VALID_ID, st.text(max_size=140),
    st.tuples(_VALID_ID, st.sampled_from(["/", "..", " ", "\n", "\x00", "é", "/../x", "%2e"])).map("".join),
    st.text(string.ascii_letters, min_size=128, max_size=130),  # around the length limit
)
_NOT_STR = st.one_of(st.integers(), st.floats(), st.booleans(), st.binary(max_size=4),
                     st.lists(st.integers(), max_size=2))
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                          max_size=3), max_leaves=8)


def _safe_id(value: str) -> bool:
    """What a namespace id must be to be safe in URLs, file names and SQL: short plain ASCII."""
    return (0 < len(value) <= 128 and value.isascii() and value[0].isalnum()
            and all(c.isalnum() or c in "_.@:+-" for c in value))


@settings(max_examples=400, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(user=_ID_LIKE | _NOT_STR, agent=_ID_LIKE, session=_ID_LIKE)
def test_namespace_accepts_exactly_the_safe_ids(cases_tried, user, agent, session):
    cases_tried[0] += 1
    values = {"user": user, "agent": agent, "session": session}
    ok = any(v is not None for v in values.values()) and all(
        v is None or (isinstance(v, str) and _safe_id(v)) for v in values.values())
    try:
        namespace = Namespace(**values)
    except InvalidInput:
        assert not ok
        return
    assert ok
    assert Namespace.from_dict(namespace.as_dict()) == namespace


@settings(max_examples=300, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(data=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), _ID_LIKE | _JSON, max_size=4) | _JSON)
def test_namespace_from_any_json_is_a_namespace_or_invalid_input(cases_tried, data):
    cases_tried[0] += 1
    try:
        namespace = Namespace.from_dict(data)
    except InvalidInput:
        return
    assert isinstance(data, dict) and set(data) <= set(FIELDS)
    assert namespace.set_fields() == {k: v for k, v in data.items() if v is not None}


# --- memory blobs --------------------------------------------------------------------------
_SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 8))


@settings(max_examples=150, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(x=_SHAPES.flatmap(lambda s: hnp.arrays(np.float32, s, elements=st.floats(width=32, allow_nan=False))))
def test_fp16_memory_round_trips_exactly_to_fp16(cases_tried, x):
    cases_tried[0] += 1
    tensor = torch.from_numpy(x)
    with np.errstate(over="ignore"):  # beyond fp16's range is inf, in numpy and torch alike
        decoded = decode_memory(encode_memory(tensor, "float16"), "float16", x.shape)
    assert torch.equal(decoded, tensor.half().float())


@settings(max_examples=150, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(x=_SHAPES.flatmap(lambda s: hnp.arrays(np.float32, s, elements=st.floats(-65504, 65504, width=32))))
def test_int8_memory_is_within_quantisation_error(cases_tried, x):
    cases_tried[0] += 1
    decoded = decode_memory(encode_memory(torch.from_numpy(x), "int8"), "int8", x.shape).numpy()
    absmax = np.abs(x).max(axis=-1, keepdims=True).astype(np.float64)
    # Half a quantisation step, plus the fp16 rounding of the stored scale (relative 2^-11 for
    # normal numbers, absolute 2^-25 for subnormal ones) times the largest code, 127.
    bound = absmax * (0.5 / 127 + 2.0**-11) + 127 * 2.0**-25
    assert np.all(np.abs(decoded.astype(np.float64) - x) <= bound * (1 + 1e-6))


@settings(max_examples=300, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(blob=st.binary(max_size=80), dtype=st.sampled_from(["float16", "int8", "float32", ""]) | st.text(max_size=6),
       shape=st.lists(st.integers(-2, 6) | st.integers(), max_size=4).map(tuple))
def test_decoding_any_blob_gives_its_shape_or_store_error(cases_tried, blob, dtype, shape):
    cases_tried[0] += 1
    try:
        tensor = decode_memory(blob, dtype, shape)
    except StoreError:
        return
    assert tuple(tensor.shape) == shape and tensor.dtype == torch.float32


# --- export archives -----------------------------------------------------------------------
ALICE = Namespace(user="alice")


def _record(i: int, dtype: str) -> Record:
    memory = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(i))
    return Record(id=f"r{i}", namespace=ALICE, level="sentence", parent_id=None,
                  memory=encode_memory(memory, dtype), memory_dtype=dtype, memory_shape=(2, 3, 8),
                  segment_tokens=[16, 4], key=encode_key(np.arange(8)), text=f"Fact number {i}.",
                  metadata={"i": i}, model_fingerprint="m", checkpoint_fingerprint="c")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


@pytest.fixture(scope="module")
def archive_bytes(work) -> tuple[bytes, list[dict]]:
    records = [_record(i, dtype) for i, dtype in enumerate(["float16", "int8", "float16"])]
    archive.write(records, ALICE, work / "valid.tar.gz")
    return (work / "valid.tar.gz").read_bytes(), [r.__dict__ for r in records]


def _read_archive(work: Path, data: bytes) -> list[dict] | None:
    """The records `archive.read` returns for `data`, or None when it refuses with InvalidInput."""
    path = work / "candidate.tar.gz"
    path.write_bytes(data)
    try:
        return [r.__dict__ for r in archive.read(path)]
    except InvalidInput:
        return None


@settings(max_examples=200, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(data=st.binary(max_size=600) | st.sampled_from([b"\x1f\x8b", b"BZh9", b"\xfd7zXZ\x00", b"ustar"]).flatmap(
    lambda magic: st.binary(max_size=300).map(lambda rest: magic + rest)))
def test_archive_read_refuses_arbitrary_bytes(cases_tried, work, data):
    cases_tried[0] += 1
    assert _read_archive(work, data) is None


@settings(max_examples=300, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(st.data())
def test_damaged_archive_is_refused_whole_or_read_intact(cases_tried, work, archive_bytes, data):
    """A cut or a flipped byte anywhere: InvalidInput, or every record back unchanged (a flip
    in gzip's mtime or a cut gzip trailer loses nothing the record checksums guard); never a
    partial list, never another exception."""
    cases_tried[0] += 1
    valid, records = archive_bytes
    cut = data.draw(st.none() | st.integers(0, len(valid) - 1), label="cut")
    flip = data.draw(st.none() | flips(len(valid)), label="flip")
    got = _read_archive(work, damaged(valid, cut, flip))
    assert got is None or got == records


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


_MANIFESTS = st.one_of(
    st.binary(max_size=40),  # mostly not UTF-8
    _JSON.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 50_000).map(lambda depth: b"[" * depth),  # nested past the JSON parser's depth
)


@settings(max_examples=150, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(manifest=_MANIFESTS)
def test_archive_with_any_manifest_is_refused(cases_tried, work, manifest):
    cases_tried[0] += 1
    assert _read_archive(work, _tar_gz({"manifest.json": manifest, "records.jsonl": b""})) is None


@settings(max_examples=150, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(memory=st.binary(max_size=100) | _SHAPES.map(lambda s: bytes(2 * s[0] * s[1] * s[2])),
       dtype=st.sampled_from(["float16", "int8", "float32"]),
       shape=st.lists(st.integers(-1, 8), max_size=4).map(tuple) | _SHAPES, key=st.binary(max_size=9))
def test_archive_records_with_valid_checksums_always_decode(cases_tried, work, memory, dtype, shape, key):
    """The checksums are unkeyed, so anyone can write matching ones: what import accepts must
    still decode, or it would fail later, inside recall."""
    cases_tried[0] += 1
    crafted = _record(0, "float16").changed(memory=memory, memory_dtype=dtype, memory_shape=shape, key=key)
    archive.write([crafted], ALICE, work / "crafted.tar.gz")
    try:
        records = archive.read(work / "crafted.tar.gz")
    except InvalidInput:
        return
    for record in records:
        if record.pending:  # a text record whose memory the importing store writes: nothing to decode
            assert record.text is not None and not record.memory and not record.key
            continue
        assert tuple(record.memory_tensor().shape) == record.memory_shape
        assert record.key_vector().dtype == np.float32


# --- .r3m memory files ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def r3m_bytes(work) -> tuple[bytes, Memory]:
    memory = Memory(snapshots=torch.randn(3, 4, 8), token_counts=[16, 16, 5], segment_len=16,
                    model_fingerprint="model-fp", checkpoint_fingerprint="ckpt-fp", model_name="tiny",
                    extra={"source": "test"})
    memory.save(work / "valid.r3m")
    return (work / "valid.r3m").read_bytes(), Memory.load(work / "valid.r3m")


def _load_memory(work: Path, data: bytes) -> Memory | None:
    path = work / "candidate.r3m"
    path.write_bytes(data)
    try:
        return Memory.load(path)
    except MemoryFileError:
        return None


@settings(max_examples=200, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(data=st.binary(max_size=400) | st.binary(max_size=300).map(
    lambda rest: len(rest).to_bytes(8, "little") + rest))  # a header length that fits the file
def test_memory_load_refuses_arbitrary_bytes(cases_tried, work, data):
    cases_tried[0] += 1
    assert _load_memory(work, data) is None


@settings(max_examples=300, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(st.data())
def test_damaged_memory_file_is_refused_or_its_tensors_are_intact(cases_tried, work, r3m_bytes, data):
    """The checksum covers the tensors: damage there is always refused. Metadata text is not
    checksummed, so a flip inside it may load, but only as well-formed values."""
    cases_tried[0] += 1
    valid, original = r3m_bytes
    cut = data.draw(st.none() | st.integers(0, len(valid) - 1), label="cut")
    flip = data.draw(st.none() | flips(len(valid)), label="flip")
    loaded = _load_memory(work, damaged(valid, cut, flip))
    if cut is not None:
        assert loaded is None
    if loaded is not None:
        assert torch.equal(loaded.snapshots, original.snapshots) and loaded.token_counts == original.token_counts
        assert loaded.segment_len >= 1 and isinstance(loaded.extra, dict)


# --- checkpoints ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_dir(work) -> Path:
    tiny = R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY)
    tiny.save_checkpoint(work / "ckpt")
    return work / "ckpt"


def _damaged_checkpoint(work: Path, source: Path, weights: bytes, rehash: bool) -> Path:
    """A copy of `source` with `weights`; with `rehash`, config.json vouches for them, so the
    safetensors parser itself meets the damage instead of the checksum."""
    target = work / "candidate-ckpt"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    (target / WEIGHTS_FILE).write_bytes(weights)
    if rehash:
        meta = json.loads((target / "config.json").read_text())
        meta["weights_sha256_16"] = _file_hash(target / WEIGHTS_FILE)
        (target / "config.json").write_text(json.dumps(meta))
    return target


@settings(max_examples=150, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(st.data())
def test_damaged_checkpoint_weights_are_refused(cases_tried, work, checkpoint_dir, data):
    cases_tried[0] += 1
    valid = (checkpoint_dir / WEIGHTS_FILE).read_bytes()
    header = 8 + int.from_bytes(valid[:8], "little")
    cut = data.draw(st.none() | st.integers(0, len(valid) - 1), label="cut")
    flip = data.draw(flips(len(valid)) if cut is None else st.none() | flips(len(valid)), label="flip")
    with pytest.raises(CheckpointError):
        read_checkpoint(_damaged_checkpoint(work, checkpoint_dir, damaged(valid, cut, flip), rehash=False))
    # Past the checksum: a damaged header must still fail as CheckpointError, nothing else.
    if cut is None and flip[0] >= header:
        return  # a flip in tensor data is valid safetensors; only the checksum can catch it
    with contextlib.suppress(CheckpointError):
        read_checkpoint(_damaged_checkpoint(work, checkpoint_dir, damaged(valid, cut, flip), rehash=True))
