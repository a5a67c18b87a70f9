"""r3mem's beam search and expansion reader against transformers': the same picks, fewer rows."""


import pytest
import torch
from tests.decode.test_beam import _ids, _perturb_memory_path
from torch.nn.functional import scaled_dot_product_attention
from transformers import GenerationConfig, LogitsProcessorList

from r3mem.base_model import embedding_table
from r3mem.decode.beam import generate
from r3mem.decode.beam_search import beam_search
from r3mem.decode.options import Decoding
from r3mem.decode.pool_guidance import PoolGuide
from r3mem.decode.reader import DTYPE_VARIABLE, ReorderedCache, decode_attention, merged_reader, reader_dtype
from r3mem.errors import InvalidInput
from r3mem.machine import native_bf16


def _prefix(tiny):
    net = tiny.network
    _perturb_memory_path(net)
    memory = net.write(net.initial(2, 4), torch.stack([_ids(tiny, 16), _ids(tiny, 16, 16)])).detach()
    empty = torch.empty(2, 0, net.hidden_size)
    return net, memory, net.read_inputs(memory, "segment", empty)


def _transformers_beams(net, prefix, n_tokens, beams, processors=()):
    settings = GenerationConfig(num_beams=beams, max_new_tokens=n_tokens, eos_token_id=None, pad_token_id=0,
                                do_sample=False)
    with net.adapter("expand"):
        mask = torch.ones(prefix.shape[:2], dtype=torch.long)
        out = net.causal_lm.generate(inputs_embeds=prefix, attention_mask=mask, generation_config=settings,
                                     logits_processor=LogitsProcessorList(processors))
    return out[:, -n_tokens:]


@pytest.mark.parametrize("beams", [1, 4])
def test_beam_search_picks_what_transformers_beam_search_picks(tiny, beams):
    net, _, prefix = _prefix(tiny)
    with net.adapter("expand"):
        ours = beam_search(net.causal_lm, prefix, 12, beams)
    assert torch.equal(ours, _transformers_beams(net, prefix, 12, beams))


def test_beam_search_with_pool_guidance_picks_what_transformers_picks_with_it(tiny):
    net, memory, prefix = _prefix(tiny)
    guide = PoolGuide(memory, [12, 9], embedding_table(net.causal_lm), 4.0, 0.25, 4.0)
    with net.adapter("expand"):
        ours = beam_search(net.causal_lm, prefix, 12, 4, charge=guide.charge)
    theirs = _transformers_beams(net, prefix, 12, 4, [guide])
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, _transformers_beams(net, prefix, 12, 4)), "the guide should change the picks here"


def test_the_merged_reader_reads_as_the_expand_adapter_does(tiny):
    net, memory, prefix = _prefix(tiny)
    reader = merged_reader(net)
    with torch.no_grad(), net.adapter("expand"):
        adapted = net.causal_lm(inputs_embeds=prefix).logits
    assert torch.allclose(reader(inputs_embeds=prefix).logits, adapted, atol=1e-4)
    decoding = Decoding(beams=4)
    assert torch.equal(generate(net, memory, 12, decoding, reader=reader), generate(net, memory, 12, decoding))
    assert not any(p.requires_grad for p in reader.parameters())


def test_the_merged_reader_is_a_copy_that_training_does_not_reach(tiny):
    net, _, prefix = _prefix(tiny)
    reader = merged_reader(net)
    before = reader(inputs_embeds=prefix).logits
    _perturb_memory_path(net)
    assert torch.equal(reader(inputs_embeds=prefix).logits, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_attention_agrees_with_the_standard_kernel_for_one_new_token(dtype):
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(5, 6, 1, 16, generator=generator).to(dtype)
    key, value = (torch.randn(5, 2, 9, 16, generator=generator).to(dtype) for _ in range(2))
    module = torch.nn.Module()
    module.num_key_value_groups = 3
    ours, _ = decode_attention(module, query, key, value, None, scaling=0.25)
    theirs = scaled_dot_product_attention(query.float(), key.float(), value.float(), scale=0.25, enable_gqa=True)
    assert ours.shape == (5, 1, 6, 16)
    assert torch.allclose(ours.float(), theirs.transpose(1, 2), atol=1e-5 if dtype == torch.float32 else 2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reordering_the_cache_gathers_each_beams_rows_exactly(dtype):
    cache = ReorderedCache()
    keys = torch.randn(4, 2, 3, 8).to(dtype)
    cache.update(keys, keys + 1, 0)
    order = torch.tensor([2, 2, 0, 3, 1])
    cache.reorder_cache(order)
    assert torch.equal(cache.layers[0].keys, keys[order]) and torch.equal(cache.layers[0].values, (keys + 1)[order])


def test_the_guide_in_bfloat16_charges_within_a_tenth_of_a_nat_of_float32(tiny):
    net, memory, _ = _prefix(tiny)
    table = embedding_table(net.causal_lm)
    exact = PoolGuide(memory, [12, 9], table, 4.0, 0.25, 4.0)
    rounded = PoolGuide(memory, [12, 9], table, 4.0, 0.25, 4.0, product_dtype=torch.bfloat16)
    written = torch.randint(0, table.shape[0], (8, 5))
    scores = torch.zeros(8, table.shape[0])
    memory_of = torch.arange(2).repeat_interleave(4)
    difference = rounded.charge(written, scores, memory_of) - exact.charge(written, scores, memory_of)
    assert difference.abs().max() < 0.1 and difference.abs().max() > 0


def test_nothing_to_generate_is_an_empty_row_per_memory(tiny):
    net, _, prefix = _prefix(tiny)
    with net.adapter("expand"):
        assert beam_search(net.causal_lm, prefix, 0, 4).shape == (2, 0)


def test_the_reader_runs_in_the_dtype_the_environment_names_else_in_native_bfloat16(monkeypatch, tiny):
    monkeypatch.setenv(DTYPE_VARIABLE, "float32")
    assert reader_dtype("cpu") == torch.float32 and tiny.expansion_reader.dtype == torch.float32
    monkeypatch.setenv(DTYPE_VARIABLE, "bfloat16")
    assert reader_dtype("cpu") == torch.bfloat16
    monkeypatch.setenv(DTYPE_VARIABLE, "fp8")
    with pytest.raises(InvalidInput, match="R3MEM_EXPAND_DTYPE must be one of float32, bfloat16, got 'fp8'"):
        reader_dtype("cpu")
    monkeypatch.delenv(DTYPE_VARIABLE)
    assert reader_dtype("cpu") == (torch.bfloat16 if native_bf16("cpu") else torch.float32)
    assert reader_dtype("cuda") == torch.float32
