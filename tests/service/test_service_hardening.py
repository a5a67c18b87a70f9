"""The HTTP API under the attacks of issue 33: no input gives a 5xx, another namespace's id is
indistinguishable from a missing one at import too, and each key has its own rate limit."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from tests.service.test_service import ALICE, BOB, BOB_TEXT, assert_error, bearer

from r3mem.service import Settings, create_api_key, create_app
from r3mem.store import archive


@pytest.fixture
def served(store):
    """(client, alice's headers) over the tiny model; a tight rate limit is set per test."""
    with TestClient(create_app(Settings(rate_limit=None), store=store), raise_server_exceptions=False) as client:
        yield client, bearer(create_api_key(store.backend, ALICE, "alice"))


def test_no_input_gives_a_server_error(served, store):
    client, alice = served
    ns = {"namespace": {"user": "alice"}}
    json_headers = {**alice, "Content-Type": "application/json"}
    deep = b'{"namespace": {"user": "alice"}, "text": "tea", "metadata": ' + b'{"a": ' * 100_000 + b"1" + \
        b"}" * 100_000 + b"}"
    cases = [  # (method, url, raw JSON body, status, a word the error must hold)
        ("POST", "/v1/memories", b'{"namespace": {"user": "alice"}, "text": "tea \\ud800"}', 422, "text"),
        ("POST", "/v1/memories", b'{"namespace": {"user": "alice"}, "messages": [{"content": "\\udfff"}]}', 422,
         "content"),
        ("POST", "/v1/recall", b'{"namespace": {"user": "alice"}, "query": "tea \\ud800"}', 422, "query"),
        ("POST", "/v1/recall", b'{"namespace": {"user": "alice"}, "query": "tea", "where": {"k": "\\ud800"}}', 422,
         "where"),
        ("POST", "/v1/recall", b'{"namespace": {"user": "alice"}, "query": "tea", "where": {"k": NaN}}', 422,
         "where"),
        ("POST", "/v1/ask", b'{"namespace": {"user": "alice"}, "question": "\\ud83d?"}', 422, "question"),
        ("POST", "/v1/memories", b'{"namespace": {"user": "alice"}, "text": "tea", "metadata": {"x": NaN}}', 422,
         "metadata"),
        ("POST", "/v1/memories", b'{"namespace": {"user": "alice"}, "text": "tea", "metadata": {"x": -Infinity}}',
         422, "metadata"),
        ("POST", "/v1/memories", deep, 422, "nested"),
        ("POST", "/v1/memories", b'{"namespace": {"user": "alice"}, "text": "t", "metadata": ' +
         json.dumps(json.loads('{"a":' * 40 + "1" + "}" * 40)).encode() + b"}", 422, "nested"),
        ("PATCH", "/v1/memories/abc", b'{"namespace": {"user": "alice"}, "metadata": {"\\ud800": 1}}', 422,
         "metadata"),
        # NUL reaches PostgreSQL's text and jsonb as a store error (503) unless refused first
        ("POST", "/v1/memories", b'{"namespace": {"user": "alice"}, "text": "t", "metadata": {"k": "a\\u0000"}}',
         422, "NUL"),
        ("POST", "/v1/recall", b'{"namespace": {"user": "alice"}, "query": "tea", "where": {"k\\u0000": 1}}', 422,
         "NUL"),
        ("GET", "/v1/memories/%00?user=alice", b"", 422, "record_id"),
        ("DELETE", "/v1/memories/%ED%A0%80?user=alice", b"", 422, "record_id"),
    ]
    for method, url, body, status, word in cases:
        response = client.request(method, url, content=body, headers=json_headers)
        assert_error(response, status)
        assert word in response.json()["error"], (url, response.text)
    assert store.stats(ALICE)["records"] == 0
    # the error table's promise: a body that is not JSON is 415, not a 422 about a dictionary
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = client.post("/v1/memories", content=json.dumps({**ns, "text": "tea"}),
                               headers={**alice, "Content-Type": content_type})
        assert_error(response, 415)
    assert client.post("/v1/memories", content=json.dumps({**ns, "text": "tea"}),
                       headers={**alice, "Content-Type": "application/json; charset=utf-8"}).status_code == 201


def test_import_answers_the_same_for_another_namespaces_id_as_for_a_free_one(served, store, tmp_path):
    client, alice = served
    bob_doc = store.add(BOB, text=BOB_TEXT)[0]
    note = store.add(ALICE, messages=[{"role": "user", "content": "I like green tea."}])[0]
    store.flush()
    note = store.get(note.id, ALICE)
    store.delete(note.id, ALICE)
    gzip_headers = {**alice, "Content-Type": "application/gzip"}
    answers = []
    for record_id in ("0" * 32, bob_doc.id):
        path = tmp_path / f"{record_id}.tar.gz"
        archive.write([replace(note, id=record_id, memory_checksum="", checksum="")], ALICE, path)
        response = client.post("/v1/import", headers=gzip_headers, content=path.read_bytes())
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1] == (200, {"imported": 1})
    assert store.get(bob_doc.id, BOB).text == BOB_TEXT
    # a parent in bob's namespace is refused in the words used for a parent nobody holds
    path = tmp_path / "child.tar.gz"
    archive.write([replace(note, id="1" * 32, parent_id=bob_doc.id, memory_checksum="", checksum="")], ALICE, path)
    response = client.post("/v1/import", headers=gzip_headers, content=path.read_bytes())
    assert_error(response, 422)
    assert "parent" in response.json()["error"]
    assert store.delete(bob_doc.id, BOB)[0] == bob_doc.id
    assert len(store.list(ALICE)) == 2


def test_each_key_has_its_own_rate_limit(store):
    app = create_app(Settings(rate_limit="3/minute"), store=store)
    with TestClient(app) as client:
        alice = bearer(create_api_key(store.backend, ALICE, "alice"))
        bob = bearer(create_api_key(store.backend, BOB, "bob"))
        for _ in range(3):
            assert client.get("/v1/stats?user=alice", headers=alice).status_code == 200
        refused = client.get("/v1/stats?user=alice", headers=alice)
        assert_error(refused, 429)
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert client.get("/v1/stats?user=bob", headers=bob).status_code == 200  # bob's budget is his own
        assert_error(client.get("/v1/stats?user=alice"), 401)  # no key: refused before any counting


def test_rate_limit_setting_is_checked():
    from r3mem.errors import InvalidInput

    with pytest.raises(InvalidInput, match="rate_limit"):
        Settings(rate_limit="lots")
    assert create_app(Settings(rate_limit=None)).state.limiter.limiter is None


def test_serve_takes_a_rate_limit(monkeypatch, capsys):
    import r3mem.service.server as server
    from r3mem.cli import main

    seen = []
    monkeypatch.setattr(server, "serve", lambda settings, preload=False: seen.append(settings))
    assert main(["serve", "--rate-limit", "2/minute"]) == 0
    assert main(["serve", "--rate-limit", "none"]) == 0
    assert main(["serve"]) == 0
    assert main(["serve", "--rate-limit", "lots"]) == 2
    assert "rate_limit" in capsys.readouterr().err
    assert [s.rate_limit for s in seen] == ["2/minute", None, Settings().rate_limit]
