"""`r3mem mcp`: the tools an agent sees, driven by the official SDK's own client over stdio, and
over streamable HTTP behind an API key; the namespace is the server's, whatever a tool is sent."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters
from tests.conftest import tiny_base
from tests.embedders import HashEmbedder
from tests.faults import free_port

from r3mem.mcp_server import TOOLS, MemoryTools, create_mcp_server
from r3mem.service.keys import create_api_key
from r3mem.store import MemoryStore, Namespace
from r3mem.store.location import open_backend

ROOT = Path(__file__).resolve().parents[1]
ALICE = Namespace(user="alice")
TEXT = "Alice keeps a green teapot. She drinks tea at noon.\n\nHer cat is called Miso."


@pytest.fixture
def model_dir(tmp_path) -> Path:
    base = tiny_base()
    base.model.save_pretrained(tmp_path / "tiny-model")
    base.tokenizer.save_pretrained(tmp_path / "tiny-model")
    return tmp_path / "tiny-model"


def _stdio(store_url: str, model_dir: Path, *namespace: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "r3mem.cli", "mcp", *namespace, "--store", store_url,
                                      "--model", str(model_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})


@pytest.mark.slow  # spawns `r3mem mcp`
def test_an_agent_lists_adds_searches_and_deletes_over_stdio(tmp_path, model_dir, tiny):
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    with_bob = MemoryStore(open_backend(url), tiny, embedder=HashEmbedder())
    with_bob.add(Namespace(user="bob"), text="Bob hides the zebra code.")
    with_bob.close()

    async def agent() -> dict:
        async with Client(_stdio(url, model_dir, "--user", "alice", "--agent", "desk")) as client:
            tools = (await client.list_tools()).tools
            added = await client.call_tool("add_memory", {"text": TEXT, "metadata": {"topic": "home"}})
            found = await client.call_tool("search_memories", {"query": "teapot", "method": "bm25", "top_k": 2})
            doc = added.structured_content["added"][0]["id"]
            widened = await client.call_tool("list_memories", {"user": "bob", "namespace": {"user": "bob"}})
            gone = await client.call_tool("delete_memory", {"memory_id": doc})
            missing = await client.call_tool("get_memory", {"memory_id": doc})
            return {"tools": tools, "added": added, "found": found, "gone": gone, "missing": missing,
                    "widened": widened}

    got = asyncio.run(agent())
    assert {t.name for t in got["tools"]} == set(TOOLS)
    for t in got["tools"]:  # every argument is typed and described
        assert t.description, t.name
        for name, prop in t.input_schema.get("properties", {}).items():
            assert prop.get("description"), (t.name, name)
    assert not got["added"].is_error and len(got["added"].structured_content["added"]) >= 3
    hits = got["found"].structured_content["results"]
    assert hits and "teapot" in hits[0]["text"] and hits[0]["user"] == "alice" and hits[0]["agent"] == "desk"
    assert got["gone"].structured_content["deleted"][0] == got["added"].structured_content["added"][0]["id"]
    assert got["missing"].is_error and "no record" in got["missing"].content[0].text
    # an argument naming another namespace is no parameter of any tool: it widens nothing
    assert {m["user"] for m in got["widened"].structured_content["memories"]} == {"alice"}
    store = MemoryStore(open_backend(url), model=None)
    assert store.list(Namespace(user="alice")) == [] and len(store.list(Namespace(user="bob"))) >= 1
    store.close()


def test_every_tool_acts_inside_the_servers_namespace_only(tmp_path, tiny):
    store = MemoryStore(open_backend(f"sqlite:///{tmp_path / 's.sqlite3'}"), tiny, embedder=HashEmbedder())
    bob_doc = store.add(Namespace(user="bob"), text="Bob hides the zebra code.")[0]
    tools = MemoryTools(store, ALICE)
    added = tools.add_memory(TEXT)["added"]
    assert tools.search_memories("zebra code", method="bm25")["results"] == []
    assert {m["id"] for m in tools.list_memories()["memories"]} == {a["id"] for a in added}
    for call in (tools.get_memory, tools.delete_memory, tools.memory_history, tools.expand_memory):
        with pytest.raises(Exception, match="no record"):
            call(bob_doc.id)
    assert tools.delete_all_memories()["deleted"] == len(added)
    assert store.get(bob_doc.id, Namespace(user="bob"))  # untouched
    store.close()


def test_expand_memory_says_whether_the_regenerated_text_is_verified(tmp_path, tiny):
    store = MemoryStore(open_backend(f"sqlite:///{tmp_path / 's.sqlite3'}"), tiny, embedder=HashEmbedder())
    tools = MemoryTools(store, ALICE)
    kept = tools.add_memory("Miso sleeps.")["added"][0]["id"]
    got = tools.expand_memory(kept, beams=1)
    assert isinstance(got["verified"], bool) and got["verdict"].startswith("verified:")
    bare = store.add(ALICE, text="Miso purrs.", store_text=False)[0]
    got = tools.expand_memory(bare.id, beams=1)
    assert got["verified"] is None and got["verdict"].startswith("not verifiable") and isinstance(got["text"], str)
    store.close()


@pytest.mark.slow  # a uvicorn server in a thread
def test_streamable_http_needs_a_key_whose_scope_holds_the_namespace(tmp_path, tiny):
    from r3mem.mcp_http import MCP_PATH, auth_options

    store = MemoryStore(open_backend(f"sqlite:///{tmp_path / 's.sqlite3'}"), tiny, embedder=HashEmbedder())
    good, other = create_api_key(store.backend, ALICE), create_api_key(store.backend, Namespace(user="bob"))
    port = free_port()
    server = create_mcp_server(store, ALICE, **auth_options(store.backend, ALICE, "127.0.0.1", port))
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host="127.0.0.1")

    import threading

    import uvicorn

    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}{MCP_PATH}"
    try:
        for _ in range(100):
            if web.started:
                break
            asyncio.run(asyncio.sleep(0.05))
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        headers = {"Accept": "application/json, text/event-stream"}
        assert httpx.post(url, json=body, headers=headers).status_code == 401
        for key in ("r3m_unknown", other):
            assert httpx.post(url, json=body, headers={**headers, "Authorization": f"Bearer {key}"}).status_code == 401

        async def listed() -> set[str]:
            import httpx2  # the SDK's HTTP client
            from mcp.client.streamable_http import streamable_http_client

            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {good}"}) as http, \
                    Client(streamable_http_client(url, http_client=http)) as client:
                return {t.name for t in (await client.list_tools()).tools}

        assert asyncio.run(listed()) == set(TOOLS)
    finally:
        web.should_exit = True
        thread.join(timeout=10)
        store.close()
