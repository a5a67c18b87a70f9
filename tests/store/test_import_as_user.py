"""`import --as-user`: an archive moves into another user's namespace where the caller may write there."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from tests.embedders import HashEmbedder

from r3mem.cli import main
from r3mem.service import Settings, create_api_key, create_app
from r3mem.store import MemoryStore, Namespace
from r3mem.store.location import open_backend

ALICE, BOB = Namespace(user="alice", agent="notes"), Namespace(user="bob")
TEXT = "Alice keeps a green teapot.\n\nHer cat is called Miso."


def _exported(tmp_path, tiny) -> tuple[MemoryStore, list, str]:
    store = MemoryStore(open_backend(f"sqlite:///{tmp_path / 'store.sqlite3'}"), tiny, embedder=HashEmbedder())
    records = store.add(ALICE, text=TEXT)
    path = str(tmp_path / "alice.tar.gz")
    store.export(ALICE, path)
    return store, records, path


def test_the_store_moves_records_to_another_user_keeping_agent_and_hierarchy(tmp_path, tiny):
    store, records, path = _exported(tmp_path, tiny)
    assert store.import_(path, scope=BOB, as_user="bob") == len(records)
    moved = store.list(BOB)
    assert sorted(r.text or "" for r in moved) == sorted(r.text or "" for r in records)
    assert {r.namespace for r in moved} == {Namespace(user="bob", agent="notes")}
    for record in moved:  # fresh checksums that verify; parents are bob's own records
        store.get(record.id, BOB)
        assert record.parent_id is None or store.get(record.parent_id, BOB)
    assert len(store.list(ALICE)) == len(records)  # a copy: alice still has hers
    store.close()


def test_the_command_line_refuses_a_migration_without_as_user(tmp_path, tiny, capsys):
    store, records, path = _exported(tmp_path, tiny)
    store.close()
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    assert main(["import", "--user", "bob", path, "--store", url]) == 2
    assert main(["import", "--user", "carol", "--as-user", "bob", path, "--store", url]) == 2
    capsys.readouterr()
    assert main(["import", "--as-user", "bob", path, "--store", url]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == len(records)
    assert main(["stats", "--user", "bob", "--store", url]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == len(records)


def test_the_service_moves_an_archive_only_inside_the_keys_scope(tmp_path, tiny):
    store, records, path = _exported(tmp_path, tiny)
    headers = {"Authorization": f"Bearer {create_api_key(store.backend, BOB)}", "Content-Type": "application/gzip"}
    body = Path(path).read_bytes()
    with TestClient(create_app(Settings(), store=store)) as client:
        assert client.post("/v1/import", content=body, headers=headers).status_code == 422  # alice's records
        assert client.post("/v1/import", params={"as_user": "carol"}, content=body, headers=headers).status_code == 422
        r = client.post("/v1/import", params={"as_user": "bob"}, content=body, headers=headers)
        assert r.status_code == 200 and r.json()["imported"] == len(records)
    assert len(store.list(BOB)) == len(records)
    store.close()
