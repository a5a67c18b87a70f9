"""The activation memory on a tiny Llama: bounded, correctly re-positioned, read as the LM reads."""

import pytest
import torch
from tests.conftest import CORPUS, tiny_base
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from r3mem import activation_memory as am


@pytest.fixture(scope="module")
def lm():
    return tiny_base(init_range=0.2).model.eval()


@pytest.fixture(scope="module")
def ids():
    return tiny_base().tokenizer(CORPUS * 3, add_special_tokens=False)["input_ids"]


def test_rotation_moves_a_key_to_its_new_position(lm):
    """RoPE composes additively: rotating a key set at s by d equals setting it at s + d."""
    torch.manual_seed(0)
    heads, n, dim = 2, 5, lm.config.head_dim
    raw = torch.randn(1, heads, n, dim)
    at = torch.tensor([[3, 9, 17, 40, 41]])
    delta = torch.tensor([-3, -8, -15, -37, -37])
    cos, sin = lm.model.rotary_emb(raw, at)
    placed, _ = apply_rotary_pos_emb(raw, raw, cos, sin)
    cos2, sin2 = lm.model.rotary_emb(raw, at + delta)
    expected, _ = apply_rotary_pos_emb(raw, raw, cos2, sin2)
    moved = am._rotate(placed[0], delta.expand(heads, n), lm.model.rotary_emb.inv_freq)
    assert torch.allclose(moved, expected[0], atol=1e-5)


def test_memory_is_bounded_and_keeps_sink_and_newest(lm, ids):
    config = am.ActivationConfig(budget=8, recent_share=0.5)
    memory = am.fold_all(lm, ids[:200], 32, config)
    assert memory.size == 8
    assert len(memory.keys) == lm.config.num_hidden_layers
    assert memory.keys[0].shape == (1, lm.config.num_key_value_heads, 8, lm.config.head_dim)
    scores = torch.rand(2, 40)
    chosen = am._choose(scores, 8, 4)
    assert chosen.shape == (2, 8)
    assert (chosen[:, 0] == 0).all() and (chosen[:, -4:] == torch.arange(36, 40)).all()
    assert (chosen.diff(dim=-1) > 0).all(), "entries stay in text order"


def test_unevicted_memory_reads_exactly_like_the_raw_tokens(lm, ids):
    """With room for every entry and no bias, [memory of S ; C] is [S ; C]: nothing is lost."""
    config = am.ActivationConfig(budget=64, bias=0.0)
    history, context, target = ids[:32], ids[32:48], ids[48:64]
    memory = am.fold(lm, am.EMPTY, history, config)
    assert memory.size == 32
    with_memory = am.target_nll(lm, memory, context, target, config)
    raw = am.target_nll(lm, am.EMPTY, history + context, target, config)
    assert torch.allclose(with_memory, raw, atol=1e-4)


def test_bias_lowers_attention_to_memory_but_not_to_the_sink():
    mask = am.reader_mask(4, 3, am.ActivationConfig(bias=1.5), torch.float32, torch.device("cpu"))[0, 0]
    assert mask.shape == (3, 7)
    assert (mask[:, 0] == 0).all() and (mask[:, 1:4] == -1.5).all()
    assert mask[0, 5] == float("-inf") and mask[2, 6] == 0, "causal over the tokens"


def test_greedy_matches_the_lm_and_the_memory_changes_it(lm, ids):
    prompt = ids[100:120]
    plain = am.greedy(lm, am.EMPTY, prompt, 6)
    reference = lm.generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert plain == reference[0, len(prompt):].tolist()
    memory = am.fold_all(lm, ids[:96], 32, am.ActivationConfig(budget=8))
    assert not torch.allclose(am.target_nll(lm, memory, prompt, ids[120:140]),
                              am.target_nll(lm, am.EMPTY, prompt, ids[120:140]))


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="invalid activation memory"):
        am.ActivationConfig(budget=1)
    with pytest.raises(ValueError, match="invalid activation memory"):
        am.ActivationConfig(recent_share=1.0)
    with pytest.raises(ValueError, match="invalid activation memory"):
        am.ActivationConfig(reach=-1)


def test_attention_from_near_queries_does_not_rank_an_entry():
    """Two key heads; queries at text positions 100 and 101; reach 10: entries at 95..101 are near."""
    attention = torch.ones(4, 2, 5)  # 4 query heads over 2 key heads
    keys = torch.tensor([[0, 50, 95, 100, 101], [0, 20, 91, 92, 99]])
    far = am._far_attention(attention, keys, torch.tensor([100, 101]), reach=10)
    assert far[0].tolist() == [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0]]
    assert far[2].tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]  # 101 - 91 = 10 is far enough; 100 - 91 is not
    assert torch.equal(far[1], far[0]) and torch.equal(far[3], far[2]), "query heads share their key head"


def test_memory_remembers_where_each_entry_stood_in_the_text(lm, ids):
    config = am.ActivationConfig(budget=8, recent_share=0.5, reach=16)
    memory = am.fold_all(lm, ids[:200], 32, config)  # 200 % 32 = 8 tokens dropped: 192 folded
    assert memory.folded == 192 and len(memory.positions) == len(memory.keys)
    for placed in memory.positions:
        assert placed.shape == (lm.config.num_key_value_heads, 8)
        assert (placed[:, 0] == 0).all(), "the sink"
        assert (placed[:, -4:] == torch.arange(188, 192)).all(), "the newest"
        assert (placed.diff(dim=-1) > 0).all()


def test_sparing_the_newest_entries_leaves_them_unbiased():
    config = am.ActivationConfig(budget=8, recent_share=0.5, bias=2.0, spare_newest=True)
    mask = am.reader_mask(8, 2, config, torch.float32, torch.device("cpu"))[0, 0]
    assert (mask[:, 0] == 0).all() and (mask[:, 1:4] == -2.0).all() and (mask[:, 4:8] == 0).all()
