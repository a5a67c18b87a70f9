"""Faults the service must survive: the database going away, a full disk, a corrupt row, a bad checkpoint.

Each test ends the way every fault must: every acknowledged add is present whole with
intact checksums, nothing unacknowledged is half there, and the service says clearly
what it refused. The SIGKILL fault is tests/service/test_service_crash.py; `make soak` repeats
all of them many times (scripts/soak.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from tests.faults import (
    ALICE,
    STORE_DOWN,
    TEXT,
    Server,
    Tally,
    assert_intact,
    check_store,
    fill,
    fresh_store,
    new_key,
    restart_postgres_under_load,
    small_filesystem,
)

from r3mem.api import R3Mem
from r3mem.errors import CheckpointError, StoreError
from r3mem.service import Settings, create_api_key, create_app
from r3mem.store import MemoryStore
from r3mem.store.location import open_backend

ALICE_NS = {"namespace": ALICE.as_dict()}


def _headers(store: MemoryStore) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_key(store.backend, ALICE, 'faults')}"}


def _add(client: TestClient, headers: dict, n: int):
    return client.post("/v1/memories", json={**ALICE_NS, "text": TEXT.format(n=n)}, headers=headers)


@pytest.mark.postgres
def test_postgres_restart_under_load_is_503_then_recovers_without_restart(tiny_model_dir, tmp_path):
    from tests.conftest import _postgres_url

    with fresh_store("postgres", tmp_path, _postgres_url()) as url:
        key, tally = new_key(url), Tally()
        server = Server(url, tiny_model_dir, tmp_path / "server.log")
        server.start()
        try:
            seen = restart_postgres_under_load(server, key, tally, outage=1.5)
            assert seen["server_alive"], "the service died with its database"
            assert seen["during_outage"].get(503, 0) > 0, seen
            assert set(seen["during_outage"]) <= {200, 201, 503}, seen  # nothing but 503 refusals
            assert seen["body_503"] == f'{{"error":"{STORE_DOWN}"}}'
            assert seen["recover_s"] is not None and seen["recover_s"] < 30, seen
            assert set(seen["after_recovery"]) <= {200, 201}, seen
            assert "store error on" in server.log()  # the cause is in the server's log
        finally:
            server.stop()
        assert_intact(check_store(url, tally.acked))


@pytest.fixture
def small_fs():
    try:
        with small_filesystem(size_mb=2) as path:
            yield path
    except PermissionError as exc:
        pytest.skip(str(exc))


def test_delete_frees_space_on_a_full_disk_and_loses_nothing_acknowledged(tiny, small_fs):
    """The store's reserve file (r3mem.store.reserve) is given up so a DELETE can be logged."""
    url = f"sqlite:///{small_fs / 'store.sqlite3'}"
    store = MemoryStore(open_backend(url), tiny)
    with TestClient(create_app(Settings(), store=store)) as client:
        headers = _headers(store)
        acked = [[r["id"] for r in _add(client, headers, n).json()["records"]] for n in range(3)]
        filler = fill(small_fs)
        for n in range(3, 300):  # bounded: a WAL file may still have room for a few adds
            r = _add(client, headers, n)
            if r.status_code != 201:
                break
            acked.append([rec["id"] for rec in r.json()["records"]])
        assert r.status_code == 503, "a full disk never refused an add"
        gone = acked.pop(0)
        deleted = client.delete(f"/v1/memories/{gone[0]}", params={"user": "alice"}, headers=headers)
        assert deleted.status_code == 200, deleted.text
        assert set(deleted.json()["deleted"]) == set(gone)
        assert client.get(f"/v1/memories/{gone[0]}", params={"user": "alice"}, headers=headers).status_code == 404
        again = acked.pop(0)  # a second delete on the still-full disk, the reserve already spent
        assert client.delete(f"/v1/memories/{again[0]}", params={"user": "alice"}, headers=headers).status_code \
            == 200
        filler.unlink()
    store.close()
    assert_intact(check_store(url, acked))


def test_disk_full_refuses_adds_clearly_and_recovers_when_space_returns(tiny, small_fs, caplog):
    url = f"sqlite:///{small_fs / 'store.sqlite3'}"
    store = MemoryStore(open_backend(url), tiny)
    acked: list[list[str]] = []
    with TestClient(create_app(Settings(), store=store)) as client:
        headers = _headers(store)
        for n in range(3):
            acked.append([r["id"] for r in _add(client, headers, n).json()["records"]])
        filler = fill(small_fs)
        refused = None
        for n in range(3, 300):  # bounded: a WAL file may still have room for a few adds
            r = _add(client, headers, n)
            if r.status_code != 201:
                refused = r
                break
            acked.append([rec["id"] for rec in r.json()["records"]])
        assert refused is not None, "a full disk never refused an add"
        assert refused.status_code == 503 and refused.json() == {"error": STORE_DOWN}
        assert refused.headers["Retry-After"] == "1"
        assert "disk is full" in caplog.text  # the log says why
        with pytest.raises(StoreError, match="database or disk is full"):
            store.add(ALICE, text=TEXT.format(n="direct"))
        for ids in acked:  # still readable on the full disk
            assert client.get(f"/v1/memories/{ids[0]}", params={"user": "alice"}, headers=headers).status_code == 200
        filler.unlink()
        r = _add(client, headers, 999)
        assert r.status_code == 201, r.text
        acked.append([rec["id"] for rec in r.json()["records"]])
    store.close()
    assert_intact(check_store(url, acked))


def _flip_memory_byte(store: MemoryStore, record_id: str) -> None:
    """Bit rot in one stored memory blob (a byte of the row flipped, as a bad disk would)."""
    with store.backend._tx(write=True) as q:
        blob = bytearray(q("SELECT memory FROM records WHERE id = ?", (record_id,)).fetchone()[0])
        blob[len(blob) // 2] ^= 0xFF
        q("UPDATE records SET memory = ? WHERE id = ?", (bytes(blob), record_id))


def test_corrupt_record_is_named_and_the_rest_of_the_namespace_stays_usable(store, store_url, caplog):
    caplog.set_level(logging.ERROR, "r3mem.service")
    with TestClient(create_app(Settings(), store=store)) as client:
        headers = _headers(store)
        first, second = ([r["id"] for r in _add(client, headers, n).json()["records"]] for n in range(2))
        store.flush()  # memories are written in batches; rot needs one on disk
        victim = first[-1]
        _flip_memory_byte(store, victim)

        r = client.get(f"/v1/memories/{victim}", params={"user": "alice"}, headers=headers)
        assert r.status_code == 500 and "Retry-After" not in r.headers  # retrying cannot help
        assert r.json()["error"].startswith(f"record {victim}: memory checksum mismatch"), r.json()
        # recall by memory reads every record's memory (fused recall verifies the hits it returns)
        recall = {**ALICE_NS, "query": "Who paid in Paris?", "top_k": 3, "method": "memory"}
        r = client.post("/v1/recall", json=recall, headers=headers)
        assert r.status_code == 500 and victim in r.json()["error"]
        assert f"corrupt record on POST /v1/recall: record {victim}" in caplog.text

        for record_id in [*first[:-1], *second]:  # everything else still reads
            assert client.get(f"/v1/memories/{record_id}", params={"user": "alice"},
                              headers=headers).status_code == 200
        assert _add(client, headers, 2).status_code == 201
        assert client.post("/v1/recall", json={**recall, "method": "bm25"}, headers=headers).status_code == 200
        report = check_store(store_url, [first, second])
        assert (report["lost"], report["torn"], report["corrupt_ids"]) == (0, 0, [victim])

        # deleting the damaged record repairs the namespace: recall by memory works again
        assert client.delete(f"/v1/memories/{victim}", params={"user": "alice"}, headers=headers).status_code == 200
        assert client.post("/v1/recall", json=recall, headers=headers).status_code == 200


@pytest.mark.slow  # spawns an `r3mem serve` process
def test_truncated_checkpoint_refuses_to_start_in_one_line(tiny, tiny_model_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    tiny.save_checkpoint(ckpt)
    weights = ckpt / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    with pytest.raises(CheckpointError, match="checksum"):
        R3Mem.load(model=str(tiny_model_dir), checkpoint=ckpt, device="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "r3mem.cli", "serve", "--port", "0", "--model", str(tiny_model_dir),
         "--checkpoint", str(ckpt), "--store", f"sqlite:///{tmp_path / 's.sqlite3'}"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == CheckpointError.exit_code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("r3mem: error: checkpoint weights"), proc.stderr
