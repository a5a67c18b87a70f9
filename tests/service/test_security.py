"""Security properties not covered in test_service.py / test_store.py: keys are compared in
constant time, nothing on the load/save/serve paths unpickles, non-loopback binds warn, and
import refuses every archive that is not exactly two regular files within the size limits,
through the library and over HTTP alike.
"""

from __future__ import annotations

import hmac
import io
import pickle
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from tests.service.test_service import ALICE, ALICE_TEXT, assert_error, bearer

from r3mem.api import R3Mem
from r3mem.errors import AccessDenied, InvalidInput
from r3mem.memory_file import Memory
from r3mem.service import Settings, create_api_key, create_app
from r3mem.service import keys as keys_module
from r3mem.service.keys import authenticate, hash_key
from r3mem.service.server import is_loopback, serve
from r3mem.store import MemoryStore
from r3mem.store.location import open_backend

# --- API keys ------------------------------------------------------------------------------


def test_every_authentication_compares_digests_in_constant_time(tmp_path, monkeypatch):
    backend = open_backend(f"sqlite:///{tmp_path / 'keys.sqlite3'}")
    key = create_api_key(backend, ALICE, "alice")
    calls = []

    def spy(a, b):
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(keys_module, "hmac", type("hmac", (), {"compare_digest": staticmethod(spy)}))
    for _ in range(3):
        assert authenticate(backend, key).scope == ALICE
    assert calls == [(hash_key(key), hash_key(key))] * 3
    # A backend whose index matched loosely is still refused by the comparison itself.
    loose = backend.api_key
    monkeypatch.setattr(backend, "api_key", lambda _digest: loose(hash_key(key)))
    with pytest.raises(AccessDenied):
        authenticate(backend, "r3m_" + "x" * 43)
    assert len(calls) == 4
    backend.close()


# --- nothing unpickles ---------------------------------------------------------------------


@pytest.fixture
def no_unpickling(monkeypatch):
    """Every unpickling entry point a library looks up at call time now fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("something tried to unpickle")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (torch.serialization, "load")]:
        monkeypatch.setattr(module, name, refuse)


def test_load_save_store_and_serve_never_unpickle(tiny_model_dir, tmp_path, no_unpickling):
    untrained = R3Mem.load(model=str(tiny_model_dir), device="cpu")
    fingerprint = untrained.save_checkpoint(tmp_path / "ckpt")
    r3 = R3Mem.load(model=str(tiny_model_dir), checkpoint=tmp_path / "ckpt", device="cpu")
    assert r3.checkpoint_fingerprint == fingerprint and r3.trained

    memory = r3.compress(ALICE_TEXT)
    memory.save(tmp_path / "a.r3m")
    assert torch.equal(Memory.load(tmp_path / "a.r3m").snapshots.float(), memory.snapshots.half().float())

    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = MemoryStore.open(url, model=r3)
    added = store.add(ALICE, text=ALICE_TEXT)
    store.export(ALICE, tmp_path / "alice.tar.gz")
    store.delete_all(ALICE)
    assert store.import_(tmp_path / "alice.tar.gz") == len(added)
    key = create_api_key(store.backend, ALICE, "alice")
    store.close()

    settings = Settings(store_url=url, model=str(tiny_model_dir), checkpoint=str(tmp_path / "ckpt"), device="cpu")
    with TestClient(create_app(settings)) as client:  # the lifespan loads the model from disk
        assert client.get("/healthz").status_code == 200
        hits = client.post("/v1/recall", headers=bearer(key), json={"namespace": {"user": "alice"}, "query": "cat"})
        assert hits.status_code == 200 and hits.json()["hits"]


# --- where the service listens -------------------------------------------------------------


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.2", True), ("[::1]", True), ("0:0:0:0:0:0:0:1", True),
    ("10.0.0.1", False), ("::", False), ("my-host.internal", False),
])
def test_serve_warns_exactly_when_the_host_is_not_loopback(host, loopback, monkeypatch, capsys):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    assert is_loopback(host) is loopback
    serve(Settings(host=host))
    warned = "reachable from other machines" in capsys.readouterr().err
    assert warned is not loopback


# --- import refuses bad archives, in the library and over HTTP ----------------------------
UPLOAD_LIMIT = 256 << 10  # the HTTP upload limit here; the route allows 4x that unpacked
UNPACKED_LIMIT = 4 * UPLOAD_LIMIT


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname, info.mode = size, kind, link, 0o644
    return info


def _pack(path: Path, members: list[tuple[str, bytes | None, bytes, str]]) -> None:
    """Write a tar.gz of (name, payload or None for a non-file, tar type, link target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload, kind, link in members:
            data = payload or b""
            tar.addfile(_info(name, len(data), kind, link), io.BytesIO(data) if payload is not None else None)


def _bad_archives(manifest: bytes, records: bytes) -> dict[str, list]:
    reg = tarfile.REGTYPE
    return {
        "symlink": [("manifest.json", None, tarfile.SYMTYPE, "/etc/passwd"), ("records.jsonl", records, reg, "")],
        "hardlink": [("manifest.json", manifest, reg, ""), ("records.jsonl", None, tarfile.LNKTYPE, "manifest.json")],
        "fifo": [("manifest.json", None, tarfile.FIFOTYPE, ""), ("records.jsonl", records, reg, "")],
        "extra member": [("manifest.json", manifest, reg, ""), ("records.jsonl", records, reg, ""),
                         ("notes.txt", b"hi", reg, "")],
        "duplicate member": [("manifest.json", manifest, reg, ""), ("manifest.json", manifest, reg, ""),
                             ("records.jsonl", records, reg, "")],
        "traversal": [("../manifest.json", manifest, reg, ""), ("/records.jsonl", records, reg, "")],
        "dot path": [("./manifest.json", manifest, reg, ""), ("records.jsonl", records, reg, "")],
        # 8 MiB of zeros gzip to a few KB: far under the upload limit, far over the unpacked one.
        "decompression bomb": [("manifest.json", manifest, reg, ""),
                               ("records.jsonl", records + b"\n" * (8 << 20), reg, "")],
    }


@pytest.fixture
def refusals(store, tmp_path, monkeypatch):
    """(client, alice's headers, valid archive path, {case: bad archive path}); alice's store is empty."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # to check that uploads are cleaned up
    (tmp_path / "tmp").mkdir()
    store.add(ALICE, text=ALICE_TEXT)
    valid = tmp_path / "alice.tar.gz"
    store.export(ALICE, valid)
    store.delete_all(ALICE)
    with tarfile.open(valid) as tar:
        manifest, records = (tar.extractfile(name).read() for name in ("manifest.json", "records.jsonl"))
    assert len(records) < UNPACKED_LIMIT < (8 << 20)
    bad = {}
    for case, members in _bad_archives(manifest, records).items():
        bad[case] = tmp_path / f"{case}.tar.gz"
        _pack(bad[case], members)
        assert bad[case].stat().st_size < UPLOAD_LIMIT, case
    app = create_app(Settings(max_import_bytes=UPLOAD_LIMIT), store=store)
    with TestClient(app) as client:
        yield client, bearer(create_api_key(store.backend, ALICE, "alice")), valid, bad


def test_import_refuses_links_extra_members_traversal_and_bombs(store, refusals, tmp_path):
    client, alice, valid, bad = refusals
    gzip_headers = {**alice, "Content-Type": "application/gzip"}
    for case, path in bad.items():
        with pytest.raises(InvalidInput):
            store.import_(path, max_bytes=UNPACKED_LIMIT)
        response = client.post("/v1/import", headers=gzip_headers, content=path.read_bytes())
        assert_error(response, 422)
        assert store.stats(ALICE)["records"] == 0, case
    # Chunked (no Content-Length) uploads are counted as they stream and cut off at the limit.
    chunks = (b"\x1f\x8b" + b"\0" * (64 << 10) for _ in range(8))
    assert_error(client.post("/v1/import", headers=gzip_headers, content=chunks), 413)
    # The same limits let the genuine archive through, so each refusal above was for its damage.
    imported = client.post("/v1/import", headers=gzip_headers, content=valid.read_bytes())
    assert imported.status_code == 200 and imported.json()["imported"] > 0
    assert list((tmp_path / "tmp").iterdir()) == []  # no upload left on disk
