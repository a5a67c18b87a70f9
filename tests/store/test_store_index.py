"""The store's search index: written with its record, gone with it, migrated on open; filters and min_score."""

from __future__ import annotations

import sqlite3
import time

import pytest
from tests.embedders import HashEmbedder

from r3mem.errors import InvalidInput, StoreError
from r3mem.store import MemoryStore, Namespace
from r3mem.store.filters import RecallFilter
from r3mem.store.indexing import memory_words
from r3mem.store.location import open_backend
from r3mem.store.recall import METHODS

ALICE = Namespace(user="alice", agent="chef", session="s1")
ALICE_OTHER = Namespace(user="alice", agent="chef", session="s2")
BOB = Namespace(user="bob")
TURNS = ["I bought fresh zucchini at the market.", "We went hiking in the Alps last week.",
         "My sister visits on Friday.", "The zucchini soup was great."]


@pytest.fixture
def indexed(store_url, tiny):
    store = MemoryStore(open_backend(store_url), tiny, embedder=HashEmbedder())
    yield store
    store.close()


def _index_rows(store: MemoryStore) -> list[tuple]:
    with store.backend._tx() as q:
        return q("SELECT i.record_id, i.source, i.embedder, i.vector IS NOT NULL FROM record_index i "
                 "ORDER BY i.doc").fetchall()


def _turns(store, namespace=ALICE, **kw):
    return [store.add(namespace, text=t, levels=("document",), **kw)[0] for t in TURNS]


def test_each_record_is_indexed_in_its_own_transaction_and_leaves_with_it(indexed):
    records = _turns(indexed)
    rows = _index_rows(indexed)
    assert [r[0] for r in rows] == [r.id for r in records]
    assert all(source == "text" and embedder == "hash-64" and has_vector for _, source, embedder, has_vector in rows)
    assert {i for i, _ in indexed.backend.lexical("zucchini", ALICE)} == {records[0].id, records[3].id}
    indexed.delete(records[0].id, ALICE)
    assert [i for i, _ in indexed.backend.lexical("zucchini", ALICE)] == [records[3].id]
    assert len(_index_rows(indexed)) == 3
    indexed.delete_all(ALICE)
    assert _index_rows(indexed) == [] and indexed.backend.lexical("zucchini", ALICE) == []


def test_a_failed_write_leaves_no_index_row(indexed):
    first = _turns(indexed)[0]
    with pytest.raises(StoreError):  # same id again: the whole insert is refused
        indexed.backend.insert([first.changed(text="a brand new word: quokka")])
    assert indexed.backend.lexical("quokka", ALICE) == [] and len(_index_rows(indexed)) == len(TURNS)


def test_update_replaces_the_index_row(indexed):
    record = _turns(indexed)[2]
    indexed.update(record.id, ALICE, text="My brother visits on Sunday.")
    assert indexed.backend.lexical("sister", ALICE) == []
    assert [i for i, _ in indexed.backend.lexical("brother", ALICE)] == [record.id]
    assert indexed.recall("brother on Sunday", ALICE, top_k=1, method="dense")[0].record.id == record.id


def test_lexical_search_keeps_to_the_namespace(indexed):
    _turns(indexed)
    bob = indexed.add(BOB, text="Bob grows zucchini too.", levels=("document",))[0]
    assert [i for i, _ in indexed.backend.lexical("zucchini", BOB)] == [bob.id]
    assert bob.id not in [i for i, _ in indexed.backend.lexical("zucchini", Namespace(user="alice"))]
    assert indexed.backend.lexical("what did the", ALICE) == []  # stop words only: no query


def test_an_existing_store_is_indexed_on_open(store_url, tiny, tmp_path):
    if not store_url.startswith("sqlite:///"):
        pytest.skip("the pre-index schema is rebuilt by hand on SQLite")
    store = MemoryStore(open_backend(store_url), tiny, embedder=HashEmbedder())
    records = _turns(store)
    store.close()
    conn = sqlite3.connect(store_url[len("sqlite:///"):])  # back to a store from before the index
    conn.executescript("DROP TABLE record_fts; DROP TABLE record_index; DELETE FROM meta WHERE name = 'record_index';")
    conn.close()
    embedder = HashEmbedder()
    again = MemoryStore(open_backend(store_url), tiny, embedder=embedder)
    assert {i for i, _ in again.backend.lexical("zucchini", ALICE)} == {records[0].id, records[3].id}
    assert all(not has_vector for *_, has_vector in _index_rows(again))  # text indexed on open, no model
    hit = again.recall("hiking in the Alps", ALICE, top_k=1, method="dense")[0]
    assert hit.record.id == records[1].id and embedder.calls >= 2  # vectors written on first dense recall
    assert all(has_vector for *_, has_vector in _index_rows(again))
    again.close()


def test_memory_only_records_are_indexed_from_what_their_memory_gives_back(indexed, tiny):
    record = indexed.add(ALICE, text="Never write this sentence down.", levels=("document",), store_text=False)[0]
    [(record_id, source, _, has_vector)] = _index_rows(indexed)
    assert (record_id, source, has_vector) == (record.id, "memory", True)
    with indexed.backend._tx() as q:
        body = q("SELECT body FROM record_index").fetchone()[0]
    assert body == memory_words(tiny, record) and body and "Never write this" not in body
    assert indexed.recall("sentence", ALICE, top_k=1)[0].record.id == record.id


def test_imported_records_are_indexed(indexed, tmp_path):
    records = _turns(indexed)
    indexed.export(ALICE, tmp_path / "a.tar")
    indexed.delete_all(ALICE)
    assert indexed.import_(tmp_path / "a.tar", scope=ALICE) == len(records)
    assert {r[0] for r in _index_rows(indexed)} == {r.id for r in records}
    assert all(has_vector for *_, has_vector in _index_rows(indexed))


@pytest.mark.parametrize("method", METHODS)
def test_filters_are_applied_by_every_method(indexed, method):
    early = _turns(indexed, metadata={"cook": "alice", "n": 1})
    time.sleep(0.01)
    middle = time.time()
    late = _turns(indexed, ALICE_OTHER, metadata={"cook": "bob", "n": 2, "vegan": True})
    everyone = Namespace(user="alice")
    cases = [
        (RecallFilter.of({"cook": "bob"}), late), (RecallFilter.of({"n": 1}), early),
        (RecallFilter.of({"vegan": True}), late), (RecallFilter.of(until=middle), early),
        (RecallFilter.of(since=middle), late), (RecallFilter.of({"cook": "alice"}, since=middle), []),
    ]
    for flt, allowed in cases:
        hits = indexed.recall("zucchini soup market", everyone, top_k=8, method=method, filters=flt)
        assert {h.record.id for h in hits} <= {r.id for r in allowed}, flt
        if not allowed:
            assert hits == []
    in_session = indexed.recall("zucchini", ALICE_OTHER, top_k=8, method=method)
    assert {h.record.id for h in in_session} <= {r.id for r in late}


def test_fused_scores_are_probabilities_and_min_score_can_empty_a_recall(indexed):
    _turns(indexed)
    hits = indexed.recall("zucchini at the market", ALICE, top_k=4)
    assert hits and all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].text == TURNS[0]
    assert indexed.recall("zucchini at the market", ALICE, min_score=1.0) == []
    kept = indexed.recall("zucchini at the market", ALICE, top_k=4, min_score=hits[1].score)
    assert [h.record.id for h in kept] == [h.record.id for h in hits[:2]]


@pytest.mark.parametrize("make", [
    lambda: RecallFilter.of({"bad key": 1}), lambda: RecallFilter.of({"k": [1]}), lambda: RecallFilter.of({"k": None}),
    lambda: RecallFilter.of({"k": float("nan")}), lambda: RecallFilter.of(since=5, until=5),
    lambda: RecallFilter.of(since="yesterday"), lambda: RecallFilter.of(["k"]),
    lambda: RecallFilter.of({f"k{i}": i for i in range(17)}),
])
def test_bad_filters_are_refused(make):
    with pytest.raises(InvalidInput):
        make()


def test_bad_recall_filter_arguments(indexed):
    with pytest.raises(InvalidInput):
        indexed.recall("x", ALICE, filters={"cook": "bob"})
    with pytest.raises(InvalidInput):
        indexed.recall("x", ALICE, min_score="high")


@pytest.mark.parametrize("scoped_max", [None, 0], ids=["scoped", "shortcuts"])
def test_lexical_search_finds_a_small_namespace_under_a_crowd(indexed, scoped_max):
    """The best-1000 shortcut must not hide a namespace whose matches rank below another's (and on
    PostgreSQL a small scope is ranked on its own rows; `scoped_max` 0 takes the shortcuts)."""
    from r3mem.store.encoder import Unit
    from r3mem.store.lexical import OVERFETCH

    if scoped_max is not None:
        indexed.backend._scoped_max = scoped_max

    crowd = indexed.encoder.records([Unit("turn", "zucchini zucchini zucchini", None, {})] * (OVERFETCH + 50),
                                    BOB, {}, True, defer=True)
    indexed.backend.insert(crowd)
    mine = indexed.add(ALICE, text="Alice once mentioned a zucchini among many other things she said.",
                       levels=("document",))[0]
    assert [i for i, _ in indexed.backend.lexical("zucchini", ALICE)] == [mine.id]
    assert len(indexed.backend.lexical("zucchini", BOB, k=5)) == 5
    indexed.forget(BOB)  # else closing the store writes the crowd's 1,050 pending memories (6 s)


@pytest.mark.parametrize("scoped_max", [None, 0], ids=["scoped", "shortcuts"])
def test_lexical_search_ranks_as_if_every_match_were_ranked(indexed, scoped_max):
    """The shortcuts (the best 1000 first; on PostgreSQL, records holding two query words first, or
    a small scope's own rows) are exact: the same scores and order as ranking every match joined to
    its record."""
    from r3mem.store.encoder import Unit
    from r3mem.store.lexical import OVERFETCH, terms

    if scoped_max is not None:
        indexed.backend._scoped_max = scoped_max

    words = ["zucchini", "soup", "market", "alps"]
    texts = [" ".join(words[j % 4] for j in range(n % 5 + 1)) + f" filler{n % 7}" for n in range(OVERFETCH + 300)]
    texts += ["zucchini " * (n % 6 + 2) + "alone" for n in range(60)]  # one word said often: still below two
    indexed.backend.insert(indexed.encoder.records([Unit("turn", t, None, {}) for t in texts], ALICE, {}, True,
                                                   defer=True))
    indexed.backend.insert(indexed.encoder.records([Unit("turn", "zucchini soup market", None, {})] * 20, BOB, {},
                                                   True, defer=True))
    query = "zucchini soup at the market in the alps"
    for namespace, k in ((ALICE, 50), (ALICE, 1200), (BOB, 5), (BOB, 50)):
        where, params = indexed.backend._records_where(namespace, None, None)
        with indexed.backend._tx() as q:
            every = q(indexed.backend._search_sql.format(where=where),
                      (indexed.backend._match(terms(query)), *params, k)).fetchall()
        assert indexed.backend.lexical(query, namespace, k=k) == [(r[0], float(r[1])) for r in every], (namespace, k)
