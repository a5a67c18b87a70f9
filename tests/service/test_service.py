"""The HTTP API: keys and namespaces isolate callers, errors have one shape, the model is shared safely."""

from __future__ import annotations

import asyncio
import io
import re
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import get_args

import fastapi.routing
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.requests import Request

from r3mem.decode.options import DEFAULT_DECODING, Decoding
from r3mem.errors import (
    AccessDenied,
    CheckpointMismatch,
    InvalidInput,
    R3MemError,
    RecordNotFound,
    StoreError,
)
from r3mem.service import Settings, create_api_key, create_app
from r3mem.service.errors import NamespaceForbidden, ServiceBusy, r3mem_error
from r3mem.service.keys import hash_key
from r3mem.service.schemas import Level, Method, Role
from r3mem.service.server import is_loopback, serve
from r3mem.service.worker import ModelWorker
from r3mem.store import Namespace
from r3mem.store.encoder import ROLES
from r3mem.store.recall import METHODS
from r3mem.store.record import LEVELS

ALICE, BOB = Namespace(user="alice"), Namespace(user="bob")
ALICE_TEXT = "Alice keeps a green teapot. She drinks tea at noon.\n\nHer cat is called Miso."
BOB_TEXT = "Bob hides the zebra code 4417 under his desk."
# Bob's number on its own, not as a run inside a hex id, checksum or timestamp (those contain "4417" by chance).
BOB_NUMBER = re.compile(rb"(?<![0-9a-f.])4417(?![0-9a-f])")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def service(store):
    """(app, client, alice's headers) over the tiny model, for each backend."""
    app = create_app(Settings(), store=store)
    with TestClient(app) as client:
        yield app, client, bearer(create_api_key(store.backend, ALICE, "alice"))


def api_routes(app) -> list:
    """Every API route; recent FastAPI keeps included routers lazily, as OpenAPI reads them."""
    expand = getattr(fastapi.routing, "iter_route_contexts", list)
    return [route for route in expand(app.routes) if isinstance(getattr(route, "original_route", route), APIRoute)]


def v1_routes(app) -> set[tuple[str, str]]:
    return {(method, route.path) for route in api_routes(app) if route.path.startswith("/v1")
            for method in route.methods}


def body_bytes(response) -> bytes:
    """The response as bytes, with an archive's members unpacked so its records can be searched."""
    if response.headers.get("content-type", "").startswith("application/gzip"):
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
            return b"".join(tar.extractfile(m).read() for m in tar.getmembers())
    return response.content


def assert_error(response, status: int | None = None) -> None:
    assert 400 <= response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and "\n" not in body["error"]


def test_a_key_never_reaches_another_users_memories(service, store, tmp_path):
    app, client, alice = service
    bob_ids = [r.id for r in store.add(BOB, text=BOB_TEXT)]
    store.add(ALICE, text=ALICE_TEXT)
    store.export(BOB, tmp_path / "bob.tar.gz")
    bob_archive = (tmp_path / "bob.tar.gz").read_bytes()

    def bob_state():
        return [r.summary() for r in store.list(BOB)], [len(store.history(i, BOB)) for i in bob_ids]

    assert app.state.worker.wait_idle()  # pending memories are written in the background: let them land first
    before = bob_state()
    bid = bob_ids[0]
    as_bob, as_alice = {"namespace": {"user": "bob"}}, {"namespace": {"user": "alice"}}
    # (url, request kwargs, expected status) per route: every /v1 route must have a case.
    cases = {
        ("POST", "/v1/memories"): [("/v1/memories", {"json": {**as_bob, "text": "x y"}}, 403)],
        ("GET", "/v1/memories"): [("/v1/memories?user=bob", {}, 403), ("/v1/memories?agent=a", {}, 403),
                                  ("/v1/memories?user=alice", {}, 200)],
        ("GET", "/v1/memories/{record_id}"): [(f"/v1/memories/{bid}?user=alice", {}, 404),
                                              (f"/v1/memories/{bid}?user=bob", {}, 403)],
        ("PATCH", "/v1/memories/{record_id}"): [
            (f"/v1/memories/{bid}", {"json": {**as_alice, "metadata": {"pwned": 1}}}, 404),
            (f"/v1/memories/{bid}", {"json": {**as_alice, "text": "overwritten"}}, 404),
            (f"/v1/memories/{bid}", {"json": {**as_bob, "metadata": {"pwned": 1}}}, 403)],
        ("DELETE", "/v1/memories/{record_id}"): [(f"/v1/memories/{bid}?user=alice", {}, 404),
                                                 (f"/v1/memories/{bid}?user=bob", {}, 403)],
        ("DELETE", "/v1/memories"): [("/v1/memories?user=bob", {}, 403), ("/v1/memories?session=s", {}, 403),
                                     ("/v1/memories?user=alice&session=none", {}, 200)],
        ("GET", "/v1/memories/{record_id}/history"): [(f"/v1/memories/{bid}/history?user=alice", {}, 404),
                                                      (f"/v1/memories/{bid}/history?user=bob", {}, 403)],
        ("POST", "/v1/recall"): [("/v1/recall", {"json": {**as_bob, "query": "zebra code"}}, 403),
                                 ("/v1/recall", {"json": {**as_alice, "query": "zebra code", "top_k": 100}}, 200),
                                 ("/v1/recall", {"json": {**as_alice, "query": "zebra", "method": "bm25"}}, 200)],
        ("POST", "/v1/ask"): [("/v1/ask", {"json": {**as_bob, "question": "What is the zebra code?"}}, 403),
                              ("/v1/ask", {"json": {**as_alice, "question": "What is the zebra code?"}}, 200)],
        ("GET", "/v1/stats"): [("/v1/stats?user=bob", {}, 403), ("/v1/stats?user=alice", {}, 200)],
        ("POST", "/v1/export"): [("/v1/export", {"json": as_bob}, 403), ("/v1/export", {"json": as_alice}, 200)],
        ("POST", "/v1/import"): [("/v1/import", {"content": bob_archive,
                                                 "headers": {"Content-Type": "application/gzip"}}, 422)],
    }
    assert v1_routes(app) == set(cases), "a /v1 route has no isolation case"
    for (method, _path), requests in cases.items():
        for url, kwargs, status in requests:
            headers = {**alice, **kwargs.pop("headers", {})}
            response = client.request(method, url, headers=headers, **kwargs)
            assert response.status_code == status, (method, url, response.text)
            if status >= 400:
                assert_error(response)
            leaked = body_bytes(response)
            assert b"zebra" not in leaked and not BOB_NUMBER.search(leaked), (method, url)
            if status < 400:
                assert not any(i.encode() in leaked for i in bob_ids), (method, url)
    assert app.state.worker.wait_idle()
    assert bob_state() == before


def test_requests_without_a_valid_key_are_refused(service, store):
    _app, client, alice = service
    for headers in ({}, bearer("r3m_not-a-key"), {"X-API-Key": "nope"}, {"Authorization": "Basic YWxpY2U6eA=="},
                    bearer("x" * 10_000)):
        response = client.get("/v1/stats?user=alice", headers=headers)
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    # Refused before the body is looked at: a valid write without a key changes nothing.
    assert_error(client.post("/v1/memories", json={"namespace": {"user": "alice"}, "text": "hi"}), 401)
    assert store.stats(ALICE)["records"] == 0
    assert client.get("/healthz").json() == {"status": "ok"}
    key = alice["Authorization"].removeprefix("Bearer ")
    assert client.get("/v1/stats?user=alice", headers={"X-API-Key": key}).status_code == 200
    with store.backend._tx() as q:  # the plaintext is nowhere in the table, only its digest
        rows = [tuple(map(str, row)) for row in q("SELECT * FROM api_keys").fetchall()]
    assert not any(key in value for row in rows for value in row)
    assert any(hash_key(key) in row for row in rows)


def test_add_get_recall_update_history_delete(service):
    _app, client, alice = service
    response = client.post("/v1/memories", headers=alice,
                           json={"namespace": {"user": "alice", "session": "s1"}, "text": ALICE_TEXT,
                                 "metadata": {"source": "test"}})
    assert response.status_code == 201, response.text
    records = response.json()["records"]
    doc = records[0]
    assert doc["level"] == "document" and doc["text"] == ALICE_TEXT and doc["metadata"] == {"source": "test"}
    got = client.get(f"/v1/memories/{doc['id']}?user=alice", headers=alice).json()
    assert got == doc
    hits = client.post("/v1/recall", headers=alice,
                       json={"namespace": {"user": "alice"}, "query": "What is the cat called?"}).json()["hits"]
    assert hits and {h["id"] for h in hits} <= {r["id"] for r in records}
    assert all(h["text_source"] == "stored" for h in hits)
    answer = client.post("/v1/ask", headers=alice, json={"namespace": {"user": "alice"}, "question": "Cat?"})
    assert answer.status_code == 200 and set(answer.json()) == {"answer", "abstained", "confidence", "sources"}
    got = answer.json()
    assert got["abstained"] == (got["answer"] is None) and 0 <= got["confidence"] <= 1
    assert {s["id"] for s in got["sources"]} <= {r["id"] for r in records}
    patched = client.patch(f"/v1/memories/{doc['id']}", headers=alice,
                           json={"namespace": {"user": "alice"}, "metadata": {"source": "edited"}}).json()
    assert patched["metadata"] == {"source": "edited"} and patched["text"] == ALICE_TEXT
    patched = client.patch(f"/v1/memories/{doc['id']}", headers=alice,
                           json={"namespace": {"user": "alice"}, "text": "Alice moved to Oslo."}).json()
    assert patched["text"] == "Alice moved to Oslo." and patched["checksum"] != doc["checksum"]
    events = client.get(f"/v1/memories/{doc['id']}/history?user=alice", headers=alice).json()["events"]
    assert [e["op"] for e in events] == ["add", "update", "update"]
    assert events[2]["detail"]["text_before"] == ALICE_TEXT
    deleted = client.delete(f"/v1/memories/{doc['id']}?user=alice", headers=alice).json()["deleted"]
    assert doc["id"] in deleted
    assert_error(client.get(f"/v1/memories/{doc['id']}?user=alice", headers=alice), 404)
    events = client.get(f"/v1/memories/{doc['id']}/history?user=alice", headers=alice).json()["events"]
    assert events[-1]["op"] == "delete"
    assert client.get("/v1/stats?user=alice", headers=alice).json()["records"] == 0


def test_export_delete_all_import_restores_identical_records(service):
    _app, client, alice = service
    ns = {"namespace": {"user": "alice", "agent": "a1"}}
    client.post("/v1/memories", headers=alice, json={**ns, "text": ALICE_TEXT})
    client.post("/v1/memories", headers=alice, json={**ns, "store_text": False,
                                                     "messages": [{"role": "user", "content": "I like tea"}]})
    before = client.get("/v1/memories?user=alice&limit=1000", headers=alice).json()["records"]
    archive = client.post("/v1/export", headers=alice, json=ns)
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/gzip"
    assert client.delete("/v1/memories?user=alice", headers=alice).json() == {"deleted": len(before)}
    assert client.get("/v1/memories?user=alice", headers=alice).json() == {"records": []}
    imported = client.post("/v1/import", headers={**alice, "Content-Type": "application/gzip"},
                           content=archive.content)
    assert imported.json() == {"imported": len(before)}, imported.text
    after = client.get("/v1/memories?user=alice&limit=1000", headers=alice).json()["records"]
    assert sorted(after, key=lambda r: r["id"]) == sorted(before, key=lambda r: r["id"])


def test_bad_input_is_refused_with_one_error_line_and_changes_nothing(service, store):
    _app, client, alice = service
    ns = {"namespace": {"user": "alice"}}
    client.post("/v1/memories", headers=alice, json={**ns, "text": ALICE_TEXT})
    assert _app.state.worker.wait_idle()  # the add's memories are written in the background
    stats = store.stats(ALICE)
    json_headers = {**alice, "Content-Type": "application/json"}
    bad = [
        ("POST", "/v1/memories", {"json": {**ns, "text": ""}}),
        ("POST", "/v1/memories", {"json": {**ns, "text": "  \n "}}),
        ("POST", "/v1/memories", {"json": {**ns, "text": "bin\x00ary"}}),
        ("POST", "/v1/memories", {"json": {**ns, "messages": [{"role": "user", "content": "a\x00"}]}}),
        ("POST", "/v1/memories", {"json": {**ns}}),
        ("POST", "/v1/memories", {"json": {**ns, "text": "a", "messages": [{"content": "b"}]}}),
        ("POST", "/v1/memories", {"json": {**ns, "txt": "typo"}}),
        ("POST", "/v1/memories", {"json": {**ns, "text": "ok", "metadata": [1, 2]}}),
        ("POST", "/v1/memories", {"json": {"namespace": {"usr": "alice"}, "text": "hi"}}),
        ("POST", "/v1/memories", {"json": {"namespace": {}, "text": "hi"}}),
        ("POST", "/v1/memories", {"json": {"namespace": {"user": "../etc"}, "text": "hi"}}),
        ("POST", "/v1/memories", {"content": b'{"namespace": {"user": "alice"}, "text": ', "headers": json_headers}),
        ("POST", "/v1/memories", {"content": b'{"namespace": {"user": "alice"}, "text": "\xff\xfe"}',
                                  "headers": json_headers}),
        ("POST", "/v1/memories", {"json": {**ns, "text": "x" * (2 << 20)}}),  # over 1 MiB: 413
        ("POST", "/v1/memories", {"content": (b"x" * 65536 for _ in range(32)), "headers": json_headers}),  # chunked
        ("POST", "/v1/recall", {"json": {**ns, "query": "tea", "level": "chapter"}}),
        ("POST", "/v1/recall", {"json": {**ns, "query": "tea", "top_k": 0}}),
        ("POST", "/v1/recall", {"json": {**ns, "query": "tea", "method": "magic"}}),
        ("POST", "/v1/recall", {"json": {**ns, "query": "tea", "beams": 0}}),
        ("POST", "/v1/ask", {"json": {**ns, "question": "tea?", "beams": 17}}),
        ("POST", "/v1/recall", {"json": {**ns, "query": "tea", "samples": -1}}),
        ("POST", "/v1/ask", {"json": {**ns, "question": "tea?", "samples": 33}}),
        ("POST", "/v1/recall", {"json": {**ns, "query": "tea", "guidance": -1}}),
        ("POST", "/v1/ask", {"json": {**ns, "question": "tea?", "guidance": 65}}),
        ("POST", "/v1/ask", {"json": {**ns, "question": "tea?", "guidance": "strong"}}),
        ("POST", "/v1/ask", {"json": {**ns, "question": ""}}),
        ("GET", "/v1/memories?user=alice&level=chapter", {}),
        ("GET", "/v1/memories", {}),
        ("PATCH", "/v1/memories/nope", {"json": {**ns}}),
        ("POST", "/v1/import", {"content": b"not an archive", "headers": {"Content-Type": "application/gzip"}}),
        ("POST", "/v1/import", {"content": b"{}", "headers": json_headers}),  # 415
        ("POST", "/v1/nope", {"json": {}}),  # 404 from routing, same body shape
        ("PUT", "/v1/memories", {"json": {}}),  # 405
    ]
    for method, url, kwargs in bad:
        kwargs = {**kwargs, "headers": {**alice, **kwargs.get("headers", {})}}
        response = client.request(method, url, **kwargs)
        assert_error(response)
        if isinstance(kwargs.get("json", {}).get("text"), str) and len(kwargs["json"]["text"]) > 1 << 20:
            assert response.status_code == 413
    assert store.stats(ALICE) == stats
    assert client.post("/v1/import", headers={**alice, "Content-Type": "application/gzip",
                                              "Content-Length": str(100 << 20)}, content=b"").status_code == 413


def test_recall_reconstructs_memory_only_records_with_the_requested_beams(service, store):
    _app, client, alice = service
    ns = {"namespace": {"user": "alice"}}
    added = client.post("/v1/memories", headers=alice,
                        json={**ns, "text": "The cat is called Tom.", "store_text": False})
    assert added.status_code == 201, added.text
    for beams, samples, guidance in ((1, 0, 4.0), (2, 0, 0.0), (2, 3, 4.0), (1, 0, 50.0)):
        response = client.post("/v1/recall", headers=alice, json={**ns, "query": "cat", "top_k": 1, "beams": beams,
                                                                   "samples": samples, "guidance": guidance})
        assert response.status_code == 200, response.text
        hit = response.json()["hits"][0]
        record = store.get(hit["id"], ALICE)
        assert hit["text_source"] == "reconstructed"
        decoding = Decoding(beams=beams, samples=samples, guidance=guidance)
        assert hit["text"] == store.encoder.r3.expand(store.encoder.as_memory(record), decoding=decoding)


def test_the_requested_decoding_reaches_the_decoder_unchanged(service, store, monkeypatch):
    """The JSON fields become one `Decoding` at the edge, and that value is what the decoder gets,
    on recall and on ask; fields left out keep the library's defaults."""
    import r3mem.api

    seen = []
    real = r3mem.api.expand_batch
    monkeypatch.setattr(r3mem.api, "expand_batch",
                        lambda net, snaps, counts, decoding, *rest: seen.append(decoding)
                        or real(net, snaps, counts, decoding, *rest))
    _app, client, alice = service
    ns = {"namespace": {"user": "alice"}}
    added = client.post("/v1/memories", headers=alice,
                        json={**ns, "text": "The cat is called Tom.", "store_text": False})
    assert added.status_code == 201, added.text
    asked = {"beams": 3, "samples": 1, "guidance": 2.5}
    assert client.post("/v1/recall", headers=alice, json={**ns, "query": "cat", "top_k": 1, **asked}).status_code == 200
    assert seen and set(seen) == {Decoding(**asked)}
    seen.clear()
    answered = client.post("/v1/ask", headers=alice, json={**ns, "question": "cat?", "top_k": 1, **asked})
    assert answered.status_code == 200
    assert seen and set(seen) == {Decoding(**asked)}
    seen.clear()
    assert client.post("/v1/recall", headers=alice, json={**ns, "query": "cat", "top_k": 1}).status_code == 200
    assert seen and set(seen) == {DEFAULT_DECODING}


def test_concurrent_requests_share_one_model_one_call_at_a_time(service, store, tiny):
    _app, client, alice = service
    active, seen = [0, 0], set()  # (running now, most at once), threads that ran the model
    lock = threading.Lock()

    def enter(*_):
        with lock:
            active[0] += 1
            active[1] = max(active)
            seen.add(threading.current_thread().name)

    def leave(*_):
        with lock:
            active[0] -= 1

    inner = tiny.network.causal_lm.model  # every forward pass of the shared model goes through it
    hooks = [inner.register_forward_pre_hook(enter), inner.register_forward_hook(leave)]
    start = threading.Barrier(16)

    def one(i: int) -> tuple[int, int, list[str]]:
        ns = {"namespace": {"user": "alice", "session": f"s{i}"}}
        start.wait()
        added = client.post("/v1/memories", headers=alice, json={**ns, "text": f"Locker {i} opens with {1000 + i}."})
        recalled = client.post("/v1/recall", headers=alice, json={**ns, "query": "Which code opens the locker?"})
        return added.status_code, recalled.status_code, [r["id"] for r in added.json()["records"]]

    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(16)))
        assert _app.state.worker.wait_idle()  # the adds' memories are written in the background
    finally:
        for hook in hooks:
            hook.remove()
    assert all(added == 201 and recalled == 200 for added, recalled, _ in results)
    ids = {i for *_, added_ids in results for i in added_ids}
    assert {r.id for r in store.list(ALICE, limit=1000)} == ids
    assert active[1] == 1 and len(seen) == 1 and next(iter(seen)).startswith("r3mem-model")


def test_openapi_lists_every_route_with_its_security_and_error_shape():
    app = create_app(Settings())
    schema = TestClient(app).get("/openapi.json").json()  # no lifespan: the schema needs no store
    routes = api_routes(app)
    for route in routes:
        for method in route.methods:
            operation = schema["paths"][route.path][method.lower()]
            if route.path.startswith("/v1"):
                assert operation["security"] and "ErrorOut" in str(operation["responses"]["422"])
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schema["components"]["securitySchemes"])
    assert (get_args(Level), get_args(Method), get_args(Role)) == (LEVELS, METHODS, ROLES)


def test_settings_and_serve_refuse_and_warn(monkeypatch, capsys):
    with pytest.raises(InvalidInput, match="port"):
        Settings(port=70_000)
    with pytest.raises(InvalidInput, match="max_request_bytes"):
        Settings(max_request_bytes=0)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    serve(Settings())
    assert capsys.readouterr().err == "" and calls[-1]["host"] == "127.0.0.1" and calls[-1]["workers"] == 1
    serve(Settings(host="0.0.0.0"))
    assert "listening on 0.0.0.0: reachable from other machines" in capsys.readouterr().err


def test_each_error_type_has_one_status():
    cases = [(InvalidInput("x"), 422), (RecordNotFound("x"), 404), (AccessDenied("x"), 401),
             (NamespaceForbidden("x"), 403), (CheckpointMismatch("x"), 409), (StoreError("/srv/db: gone"), 503),
             (ServiceBusy("x"), 503), (R3MemError("x"), 500)]
    request = Request({"type": "http", "method": "GET", "path": "/v1/x", "headers": [], "query_string": b""})
    for exc, status in cases:
        response = asyncio.run(r3mem_error(request, exc))
        assert response.status_code == status, exc
        assert "/srv/db" not in response.body.decode()


def test_app_opens_its_own_store_and_loads_the_model_once(tmp_path, tiny):
    loads = []
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.sqlite3'}",
                        model_factory=lambda: loads.append(1) or tiny)
    with TestClient(create_app(settings)) as client:
        app_store = client.app.state.store
        key = create_api_key(app_store.backend, ALICE, "alice")
        for i in range(2):
            assert client.post("/v1/memories", headers=bearer(key),
                               json={"namespace": {"user": "alice"}, "text": f"Note {i}."}).status_code == 201
    assert loads == [1]


def test_worker_refuses_work_beyond_its_queue():
    worker, release = ModelWorker(max_pending=1), threading.Event()

    async def main():
        running = asyncio.ensure_future(worker.run(release.wait))
        await asyncio.sleep(0)
        with pytest.raises(ServiceBusy):
            await worker.run(lambda: None)
        release.set()
        assert await running is True
        assert await worker.run(lambda: 7) == 7

    asyncio.run(main())
    worker.close()
