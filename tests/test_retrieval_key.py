"""The retrieval key: features independent of batching, a head that round-trips, training that separates."""

import numpy as np
import pytest
import torch
from tests.conftest import CORPUS

from r3mem.errors import CheckpointError
from r3mem.retrieval_key import KeyConfig, KeyHead, encode_keys, lm_features
from r3mem.store.encoder import RecordEncoder
from r3mem.train.key_contrastive import Example, train_head

CONFIG = KeyConfig(layer=1, dim=8, max_tokens=32)


def test_a_feature_does_not_depend_on_its_batch(tiny):
    short, long = "My dog is called Rex.", CORPUS[:300]
    alone = lm_features(tiny.network, tiny.tokenizer, [short], CONFIG)
    batched = lm_features(tiny.network, tiny.tokenizer, [long, short], CONFIG)
    assert torch.allclose(alone[0], batched[1], atol=1e-5)
    assert lm_features(tiny.network, tiny.tokenizer, [""], CONFIG).abs().sum() == 0, "no tokens, zero feature"


def test_only_the_blocks_below_the_key_layer_run(tiny):
    deeper = lm_features(tiny.network, tiny.tokenizer, ["a b c"], KeyConfig(layer=2, dim=8))
    assert not torch.allclose(lm_features(tiny.network, tiny.tokenizer, ["a b c"], CONFIG), deeper)
    assert len(tiny.network.causal_lm.model.layers) == tiny.network.causal_lm.config.num_hidden_layers


def test_head_round_trips_and_refuses_corruption(tmp_path):
    head = KeyHead(16, CONFIG)
    head.mean.copy_(torch.randn(16))
    head.save(tmp_path)
    loaded = KeyHead.load(tmp_path)
    x = torch.randn(3, 16)
    assert loaded is not None and torch.equal(head(x, "query"), loaded(x, "query"))
    assert KeyHead.load(tmp_path / "none") is None
    (tmp_path / "key.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        KeyHead.load(tmp_path)


def test_training_brings_each_question_to_its_answer():
    """Answers are a hidden transform of their questions; InfoNCE must learn to find them."""
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(16, 16, generator=gen)
    questions = {f"q{i}": torch.randn(16, generator=gen) for i in range(40)}
    answers = {f"a{i}": questions[f"q{i}"] @ mix + 0.1 * torch.randn(16, generator=gen) for i in range(40)}
    pool = sorted(answers)
    examples = [Example(f"q{i}", [pool.index(f"a{i}")], pool) for i in range(40)]
    features = questions | answers

    def top1(head):
        records = head(torch.stack([features[a] for a in pool]), "record")
        hits = [pool[int((head(features[e.query][None], "query") @ records.T).argmax())] == f"a{e.query[1:]}"
                for e in examples]
        return np.mean(hits)

    wide = KeyConfig(layer=1, dim=16)
    untrained = train_head(examples, features, wide, steps=0)
    trained = train_head(examples, features, wide, steps=300, batch=8)
    assert top1(trained) > max(0.8, top1(untrained) + 0.3)


def test_store_keys_come_from_the_head_when_the_checkpoint_has_one(tiny, monkeypatch):
    encoder = RecordEncoder(tiny)
    memory_key = encoder.query_key("Where do I live?")
    assert memory_key.shape == (tiny.network.hidden_size,)
    head = KeyHead(tiny.network.hidden_size, CONFIG)
    monkeypatch.setattr(tiny, "key_head", head)
    key = encoder.query_key("Where do I live?")
    assert key.shape == (8,) and abs(float(np.linalg.norm(key)) - 1) < 1e-5
    records = encoder.record_keys(["I live in Lyon."], encoder.memories(["I live in Lyon."]))
    expected = encode_keys(tiny.network, tiny.tokenizer, head, ["I live in Lyon."], "record")[0]
    assert np.allclose(records[0], expected)


def test_recall_rekeys_a_store_written_before_the_key_head(store, tiny, monkeypatch):
    from r3mem.store.namespace import Namespace

    alice, bob = Namespace(user="alice"), Namespace(user="bob")
    store.add(alice, text="My dog is called Rex.")
    store.add(alice, text="I live in Lyon.")
    store.add(bob, text="My cat is called Luna.")
    store.flush()
    assert store.keys.get(alice, None)[1].shape[1] == tiny.network.hidden_size  # keyed by the memory
    monkeypatch.setattr(tiny, "key_head", KeyHead(tiny.network.hidden_size, CONFIG))
    scores = store._key_similarities("Where do I live?", alice, None, None)
    assert len(scores) == len(store.list(alice)) >= 2
    assert store.keys.get(alice, None)[1].shape[1] == CONFIG.dim
    for record in store.list(alice):
        record.verify()  # the rewritten key is covered by a fresh checksum
    assert store.keys.get(bob, None)[1].shape[1] == tiny.network.hidden_size, "another namespace is untouched"
    assert store.rekey(alice) == 0, "nothing left to rekey"


def test_adds_defer_the_head_key_of_text_records_until_a_recall_reads_keys(store, tiny, monkeypatch):
    """The default recall never reads keys, so adds skip the head's pass; `key` recall rekeys first."""
    from r3mem.store.namespace import Namespace

    alice = Namespace(user="alice")
    monkeypatch.setattr(tiny, "key_head", KeyHead(tiny.network.hidden_size, CONFIG))
    told = store.add(alice, text="I live in Lyon.", levels=("document",))[0]
    hidden = store.add(alice, text="My dog is called Rex.", levels=("document",), store_text=False)[0]
    store.flush()
    widths = {r.id: len(r.key) // 2 for r in store.list(alice)}
    assert widths == {told.id: tiny.network.hidden_size, hidden.id: CONFIG.dim}, "only the text-less one keyed now"
    hits = store.recall("Where do I live?", alice, top_k=2, method="key", reconstruct=False)
    assert {h.record.id for h in hits} == {told.id, hidden.id}
    assert {len(r.key) // 2 for r in store.list(alice)} == {CONFIG.dim}
    expected = encode_keys(tiny.network, tiny.tokenizer, tiny.key_head, ["I live in Lyon."], "record")[0]
    assert np.allclose(store.get(told.id, alice).key_vector(), expected, atol=1e-2)  # fp16 on disk


def test_a_fusion_that_weighs_the_key_writes_it_with_every_add(store_url, tiny, monkeypatch):
    from r3mem.store import MemoryStore
    from r3mem.store.fusion import Fusion
    from r3mem.store.location import open_backend
    from r3mem.store.namespace import Namespace

    monkeypatch.setattr(tiny, "key_head", KeyHead(tiny.network.hidden_size, CONFIG))
    keyed = MemoryStore(open_backend(store_url), tiny, fusion=Fusion(key=1.0), memory_batch=0)
    keyed.add(Namespace(user="alice"), text="I live in Lyon.", levels=("document",))
    assert [len(r.key) // 2 for r in keyed.list(Namespace(user="alice"))] == [CONFIG.dim]
    keyed.close()
