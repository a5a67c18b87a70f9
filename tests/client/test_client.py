"""`r3mem.client` against a live `r3mem serve`: the store's own behaviour, through HTTP, with the
store's own return types and exception classes; `AsyncClient` runs the same operations."""

from __future__ import annotations

import asyncio
import tarfile

import pytest
from tests.embedders import HashEmbedder
from tests.live_server import api_key, tiny_server

from r3mem.client import AsyncClient, Client
from r3mem.errors import AccessDenied, DuplicateRecord, InvalidInput, RecordNotFound, StoreError
from r3mem.store import Answer, Hit, MemoryStore, Namespace, RecallFilter, Record
from r3mem.store.backend import Event
from r3mem.store.location import open_backend

pytestmark = pytest.mark.slow  # a real server process

ALICE, BOB = Namespace(user="alice"), Namespace(user="bob")
TEXT = "Alice keeps a green teapot. She drinks tea at noon.\n\nHer cat is called Miso."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`r3mem serve` on the tiny model and an SQLite store, with a key for alice (and one for bob)."""
    root = tmp_path_factory.mktemp("client")
    url = f"sqlite:///{root / 'store.sqlite3'}"
    keys = {"alice": api_key(url, ALICE), "bob": api_key(url, BOB)}
    with tiny_server(root, url) as running:
        yield running, keys


@pytest.fixture(params=["local", "client"])
def memory(request, server, tiny, tmp_path):
    """The same behaviour from a local `MemoryStore` and from a `Client` of the live server."""
    if request.param == "local":
        local = MemoryStore(open_backend(f"sqlite:///{tmp_path / 'local.sqlite3'}"), tiny, embedder=HashEmbedder())
        yield local
        local.close()
        return
    running, keys = server
    with Client(running.url, keys["alice"]) as client:
        yield client
        client.forget(ALICE)  # the server's store is shared by the module's tests


def test_the_store_behaves_the_same_locally_and_through_the_client(memory, tmp_path):
    records = memory.add(ALICE, text=TEXT, metadata={"src": "test"})
    assert records and all(isinstance(r, Record) for r in records)
    doc = records[0]
    got = memory.get(doc.id, ALICE)
    same = ("id", "user", "agent", "session", "level", "parent_id", "text", "metadata", "created_at")
    assert isinstance(got, Record) and {k: got.summary()[k] for k in same} == {k: doc.summary()[k] for k in same}
    assert [r.id for r in memory.list(ALICE)] == [r.id for r in records]
    assert [r.id for r in memory.list(ALICE, level="document")] == [doc.id]
    updated = memory.update(doc.id, ALICE, metadata={"src": "changed"})
    assert updated.metadata == {"src": "changed"} and updated.text == doc.text
    events = memory.history(doc.id, ALICE)
    assert [e.op for e in events] == ["add", "update"] and all(isinstance(e, Event) for e in events)
    assert events[1].detail["metadata_before"] == {"src": "test"}
    stats = memory.stats(ALICE)
    assert stats["records"] == len(records) and stats["by_level"]["document"] == 1
    hits = memory.recall("teapot", ALICE, top_k=3, method="bm25", filters=RecallFilter.of({"src": "test"}))
    assert hits and all(isinstance(h, Hit) for h in hits) and "teapot" in hits[0].text
    assert hits[0].text_source == "stored"
    answer = memory.ask("What is the cat called?", ALICE)
    assert isinstance(answer, Answer) and isinstance(answer.abstained, bool)

    archive = tmp_path / "alice.tar.gz"
    assert memory.export(ALICE, archive) == len(records) and tarfile.is_tarfile(archive)
    sentence = next(r for r in records if r.level == "sentence")
    deleted = memory.delete(sentence.id, ALICE)
    assert deleted[0] == sentence.id
    assert memory.delete_all(ALICE) == len(records) - len(deleted)
    assert memory.import_(archive) == len(records)
    with pytest.raises(DuplicateRecord):  # 409, like a checkpoint mismatch: the server names the class
        memory.import_(archive)
    assert memory.get(sentence.id, ALICE).text == sentence.text
    forgotten = memory.forget(ALICE)
    assert forgotten["records"] == len(records) and forgotten["events"] > len(records)


def test_errors_are_the_stores_own_classes(memory):
    doc = memory.add(ALICE, text=TEXT)[0]
    with pytest.raises(RecordNotFound):
        memory.get("no-such-id", ALICE)
    with pytest.raises(RecordNotFound):
        memory.history(doc.id, Namespace(user="alice", agent="other"))  # inside the key's scope, not the record's
    with pytest.raises(InvalidInput):
        memory.add(ALICE, text="")
    with pytest.raises(InvalidInput):
        memory.update(doc.id, ALICE)  # nothing to update
    with pytest.raises(InvalidInput):
        memory.list(ALICE, level="chapter")


def test_the_key_scope_and_the_connection_fail_as_store_errors(server):
    running, keys = server
    with Client(running.url, keys["alice"]) as client, pytest.raises(AccessDenied):
        client.list(BOB)
    with Client(running.url, "r3m_not-a-key") as client, pytest.raises(AccessDenied):
        client.list(ALICE)
    with Client("http://127.0.0.1:9", keys["alice"], timeout=2) as client, pytest.raises(StoreError):
        client.stats(ALICE)
    with pytest.raises(InvalidInput):
        Client("127.0.0.1:8765", keys["alice"])


def test_the_async_client_runs_the_same_operations(server):
    running, keys = server

    async def main() -> tuple:
        async with AsyncClient(running.url, keys["bob"]) as client:
            records = await client.add(BOB, text="Bob hides the zebra code under his desk.")
            listed, got = await asyncio.gather(client.list(BOB), client.get(records[0].id, BOB))
            with pytest.raises(RecordNotFound):
                await client.get("no-such-id", BOB)
            counts = await client.forget(BOB)
            return records, listed, got, counts

    records, listed, got, counts = asyncio.run(main())
    assert [r.id for r in listed] == [r.id for r in records]
    assert (got.id, got.text) == (records[0].id, records[0].text)  # its memory may have been written since
    assert counts["records"] == len(records)


def test_the_command_line_through_url_is_a_client_and_imports_no_torch(server, tmp_path):
    from tests.test_cli_light import probe

    running, keys = server
    env = {"R3MEM_URL": running.url, "R3MEM_API_KEY": keys["alice"]}
    added = probe("add", "--user", "alice", "A note about the quokka.", env=env)
    assert added["code"] == 0 and added["heavy"] == [], added
    doc = __import__("json").loads(added["out"])["added"][0]["id"]
    for argv in (("list",), ("stats",), ("recall", "quokka", "--method", "bm25"), ("get", doc), ("history", doc)):
        got = probe(*argv, "--user", "alice", env=env)
        assert got["code"] == 0 and got["heavy"] == [], (argv, got)
        assert doc in got["out"] or argv[0] in ("stats", "history")
    got = probe("ask", "--user", "alice", "What about the quokka?", "--json", env=env)
    assert got["code"] == 0 and got["heavy"] == [] and "abstained" in got["out"], got
    assert probe("get", "nope", "--user", "alice", env=env)["code"] == 6
    assert probe("list", "--user", "bob", env=env)["code"] == 8  # outside the key's scope
    assert probe("rekey", "--user", "alice", env=env)["code"] == 2  # local only
    assert probe("forget", "--yes", "--user", "alice", "--url", running.url,
                 env={"R3MEM_API_KEY": keys["alice"]})["code"] == 0


def test_the_mcp_tools_run_on_a_client_as_on_a_store(server):
    from mcp.server.mcpserver.exceptions import ToolError

    from r3mem.mcp_server import MemoryTools

    running, keys = server
    with Client(running.url, keys["alice"]) as client:
        tools = MemoryTools(client, ALICE)
        added = tools.add_memory("Alice's quokka is called Pip.")["added"]
        assert tools.search_memories("quokka", method="bm25")["results"][0]["id"] in {a["id"] for a in added}
        with pytest.raises(ToolError, match="--store"):  # the model runs where the store is
            tools.expand_memory(added[0]["id"])
        with pytest.raises(ToolError, match="no record"):
            tools.get_memory("no-such-id")
        client.forget(ALICE)
