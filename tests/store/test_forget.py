"""Forget: nothing of a forgotten namespace can be read back, by any route or from the database file,
and no other namespace loses anything."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.embedders import HashEmbedder

from r3mem.cli import main
from r3mem.errors import AccessDenied, RecordNotFound
from r3mem.service import Settings, create_api_key, create_app
from r3mem.service.keys import authenticate
from r3mem.store import MemoryStore, Namespace
from r3mem.store.location import open_backend

# Words no tokenizer, hash or timestamp produces by chance, so a byte search for them is meaningful.
GONE = Namespace(user="zelda9q")
KEPT = Namespace(user="bob")
SECRETS = ("quokkaberry", "glimmerfen", "Wrenthorpe")
# FTS5 stores a term after the prefix it shares with the term before it, and stemmed: search for the tails.
TAILS = ("okkaberr", "mmerfen", "enthorp")
GONE_TEXT = "Zelda keeps the quokkaberry jam in Wrenthorpe.\n\nHer glimmerfen password is 7731."
GONE_UPDATED = "Zelda moved away."
KEPT_TEXT = "Bob hides the zebra code under his desk.\n\nHe walks the dog at dawn."


@pytest.fixture
def forget_store(store_url: str, tiny):
    memory_store = MemoryStore(open_backend(store_url), tiny, embedder=HashEmbedder(), memory_batch=0)
    yield memory_store
    memory_store.close()


def _fill(store: MemoryStore) -> dict:
    """Every kind of trace: text records, a memory-only record, turns, an update (its event keeps the
    old text), a deleted record (its event outlives it), vectors written by a recall, API keys."""
    ids = [r.id for r in store.add(GONE, text=GONE_TEXT, metadata={"note": "glimmerfen"})]
    ids += [r.id for r in store.add(GONE, text="Quokkaberry tart recipe from Wrenthorpe.", store_text=False)]
    ids += [r.id for r in store.add(Namespace(user=GONE.user, agent="a1"),
                                    messages=[{"role": "user", "content": "I love quokkaberry pie."}])]
    store.update(ids[1], GONE, text=GONE_UPDATED)
    store.delete(ids[-1], Namespace(user=GONE.user, agent="a1"))
    store.add(KEPT, text=KEPT_TEXT)
    store.recall("quokkaberry zebra", GONE)
    store.recall("zebra dog", KEPT)
    keys = {"gone": create_api_key(store.backend, GONE, "zelda9q's key"),
            "kept": create_api_key(store.backend, KEPT, "bob's key")}
    return {"ids": ids, "keys": keys}


def _view(store: MemoryStore, ns: Namespace) -> dict:
    """Everything a namespace's owner can read back."""
    records = store.list(ns, limit=1000)
    return {
        "records": [r.summary() for r in records],
        "history": {r.id: [(e.op, e.detail) for e in store.history(r.id, ns)] for r in records},
        "stats": store.stats(ns),
        "recall": [(h.record.id, round(h.score, 6), h.text) for h in store.recall("zebra dog desk", ns)],
    }


def _database_bytes(url: str) -> bytes | None:
    """The store's files: SQLite's database and WAL, or the files of PostgreSQL's tables, TOAST and
    indexes in the test schema (after a CHECKPOINT); None when PostgreSQL's files are not readable."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the pages as they stand, written to the files
        home = Path(conn.execute("SHOW data_directory").fetchone()[0])
        schema = "relnamespace = current_schema()::regnamespace"
        toast = f"SELECT reltoastrelid FROM pg_class WHERE {schema}"
        files = [row[0] for row in conn.execute(
            f"SELECT pg_relation_filepath(oid) FROM pg_class WHERE ({schema} OR oid IN ({toast}) OR oid IN "
            f"(SELECT indexrelid FROM pg_index WHERE indrelid IN ({toast}))) AND pg_relation_filepath(oid) IS NOT NULL"
        ).fetchall()]
    try:
        return b"".join(p.read_bytes() for f in files for p in (home / f).parent.glob(Path(f).name + "*")
                        if not p.name.endswith(("_fsm", "_vm")))
    except PermissionError:
        return None


def test_forget_leaves_nothing_readable_and_spares_other_namespaces(forget_store, store_url):
    store = forget_store
    filled = _fill(store)
    before = _view(store, KEPT)

    counts = store.forget(GONE, keys=True)

    assert counts["records"] >= 5 and counts["index_rows"] >= 4 and counts["api_keys"] == 1
    assert counts["events"] > counts["records"]  # the deleted record's and the update's events went too
    for record_id in filled["ids"]:
        with pytest.raises(RecordNotFound):
            store.get(record_id, GONE)
        with pytest.raises(RecordNotFound):
            store.history(record_id, GONE)
    assert store.list(GONE) == [] and store.stats(GONE)["records"] == 0
    assert store.recall("quokkaberry glimmerfen Wrenthorpe", GONE) == []
    with pytest.raises(AccessDenied):
        authenticate(store.backend, filled["keys"]["gone"])
    assert authenticate(store.backend, filled["keys"]["kept"]).scope == KEPT
    assert _view(store, KEPT) == before  # nothing of bob's changed, not even a recall score
    data = _database_bytes(store_url)  # SQLite: read while the store is open, its WAL not checkpointed
    if data is not None:
        assert KEPT_TEXT.split()[1].encode() in data  # the search does find text that is there
        for needle in (*SECRETS, *TAILS, GONE.user, *filled["ids"]):
            assert needle.encode() not in data and needle.lower().encode() not in data, needle


def test_forget_merges_the_lexical_index_so_no_deleted_term_stays_behind_a_tombstone(tmp_path, tiny):
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = MemoryStore(open_backend(url), tiny, embedder=HashEmbedder(), memory_batch=0)
    store.add(GONE, text=GONE_TEXT)
    store.add(KEPT, text=KEPT_TEXT)
    store.forget(GONE)
    data = _database_bytes(url)
    assert not [tail for tail in TAILS if tail.encode() in data]
    store.close()


def test_delete_all_keeps_the_audit_trail_that_forget_removes(forget_store):
    records = forget_store.add(GONE, text=GONE_TEXT)
    forget_store.delete_all(GONE)
    assert [e.op for e in forget_store.history(records[0].id, GONE)] == ["add", "delete"]
    counts = forget_store.forget(GONE)
    assert counts == {"index_rows": 0, "records": 0, "events": 2 * len(records), "api_keys": 0}
    with pytest.raises(RecordNotFound):
        forget_store.history(records[0].id, GONE)


def test_forget_through_the_http_api(forget_store):
    filled = _fill(forget_store)
    app = create_app(Settings(), store=forget_store)
    with TestClient(app) as client:
        gone = {"Authorization": f"Bearer {filled['keys']['gone']}"}
        kept = {"Authorization": f"Bearer {filled['keys']['kept']}"}
        assert client.delete("/v1/memories", params={"user": "bob", "forget": "true"}, headers=gone).status_code == 403
        r = client.delete("/v1/memories", params={"user": GONE.user, "forget": "true"}, headers=gone)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["deleted"] >= 5 and body["forgotten"]["events"] > body["deleted"]
        assert body["forgotten"]["api_keys"] == 0  # keys stay unless asked for
        r = client.get(f"/v1/memories/{filled['ids'][0]}/history", params={"user": GONE.user}, headers=gone)
        assert r.status_code == 404
        r = client.delete("/v1/memories", params={"user": GONE.user, "forget": "true", "keys": "true"}, headers=gone)
        assert r.json()["forgotten"]["api_keys"] == 1
        assert client.get("/v1/stats", params={"user": GONE.user}, headers=gone).status_code == 401
        assert client.get("/v1/stats", params={"user": "bob"}, headers=kept).json()["records"] > 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_forget_on_the_command_line_asks_first_and_refuses_without_a_terminal(tmp_path, tiny, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = MemoryStore(open_backend(url), tiny, embedder=HashEmbedder(), memory_batch=0)
    store.add(GONE, text=GONE_TEXT)
    store.close()
    argv = ["forget", "--user", GONE.user, "--store", url]
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))  # not a terminal: never read
    assert main(argv) == 2
    assert "--yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Terminal("no\n"))
    assert main(argv) == 1
    capsys.readouterr()
    assert main(["stats", "--user", GONE.user, "--store", url]) == 0
    assert json.loads(capsys.readouterr().out)["records"] > 0
    monkeypatch.setattr("sys.stdin", _Terminal("yes\n"))
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["forgotten"]["records"] > 0
    assert main([*argv, "--yes"]) == 0
    assert json.loads(capsys.readouterr().out)["forgotten"] == {"index_rows": 0, "records": 0, "events": 0,
                                                                "api_keys": 0}
