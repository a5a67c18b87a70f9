"""Pool guidance: the chunk distance it charges, where it charges it, and that it steers an
expansion onto the tokens a memory pools, on the tiny model (whose reader knows nothing)."""

import pytest
import torch
from tests.conftest import CORPUS

from r3mem.base_model import embedding_table
from r3mem.decode.beam import generate
from r3mem.decode.options import Decoding
from r3mem.decode.pool_guidance import PoolGuide
from r3mem.memory_net import chunk_pool


def table(tiny):
    return embedding_table(tiny.network.causal_lm).detach().float()


def pooled(tiny, rows, m):
    """A memory that is nothing but its segments' chunk pools (rows padded with 0, masked)."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return chunk_pool(table(tiny)[ids], m, mask)


def source(tiny, n):
    return tiny.tokenize(CORPUS)[:n]


def test_only_a_chunks_last_token_is_charged_its_distance_from_the_slot(tiny):
    ids = source(tiny, 12)
    memory = pooled(tiny, [ids], 4)  # 3 tokens a chunk
    guide = PoolGuide(memory, [12], table(tiny), strength=2.0, spread=0.0, bag=0.0)
    vocab = table(tiny).shape[0]
    for step in range(12):
        prefix = torch.tensor([ids[:step]])
        charge = -guide(prefix, torch.zeros(1, vocab))[0]  # (V,)
        if step % 3 != 2:
            assert torch.equal(charge, torch.zeros(vocab))
            continue
        for v in (ids[step], (ids[step] + 1) % vocab):
            written = torch.tensor([ids[:step] + [v] + ids[step + 1 :]])
            want = (chunk_pool(table(tiny)[written], 4)[0, step // 3] - memory[0, step // 3]).pow(2).sum()
            assert float(charge[v]) == pytest.approx(2.0 * float(want), abs=1e-3)
        assert float(charge[ids[step]]) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("spread", [0.25, 1.0])
def test_a_spread_charge_pays_as_the_chunk_is_written_and_sums_to_its_distance(tiny, spread):
    """Earlier tokens pay `spread` times how far they move the chunk's remainder; the last pays the
    rest, so along any chunk written the charges add up to strength x its final distance."""
    ids = source(tiny, 12)
    memory = pooled(tiny, [ids], 3)  # 4 tokens a chunk
    guide = PoolGuide(memory, [12], table(tiny), strength=2.0, spread=spread, bag=0.0)
    vocab = table(tiny).shape[0]
    written = [ids[0], (ids[1] + 5) % vocab, ids[2], (ids[3] + 7) % vocab]  # chunk 0, two words wrong
    paid = []
    for step, v in enumerate(written):
        paid.append(float(-guide(torch.tensor([written[:step]]), torch.zeros(1, vocab))[0, v]))
    want = (chunk_pool(table(tiny)[torch.tensor([written])], 1)[0, 0] - memory[0, 0]).pow(2).sum()
    assert sum(paid) == pytest.approx(2.0 * float(want), rel=1e-4, abs=1e-3)
    assert all(abs(p) > 1e-4 for p in paid[:3])  # earlier tokens pay their share as they are written
    # the source itself pays nothing over its chunk, however the charge is spread
    source_paid = [float(-guide(torch.tensor([ids[:step]]), torch.zeros(1, vocab))[0, ids[step]]) for step in range(4)]
    assert sum(source_paid) == pytest.approx(2.0 * float((chunk_pool(table(tiny)[torch.tensor([ids[:4]])], 1)[0, 0]
                                                          - memory[0, 0]).pow(2).sum()), abs=1e-3)


def test_rows_past_their_length_are_left_alone_and_beam_rows_follow_their_memory(tiny):
    long, short = source(tiny, 8), source(tiny, 16)[8:13]
    memory = pooled(tiny, [long, short], 8)
    guide = PoolGuide(memory, [8, 5], table(tiny), strength=1.0, bag=0.0)
    vocab = table(tiny).shape[0]
    # two beams a memory: rows 0-1 expand `long`, rows 2-3 expand `short`
    prefix = torch.tensor([long[:6], long[:6], short + [0], short + [0]])
    charge = -guide(prefix, torch.zeros(4, vocab))
    assert torch.equal(charge[0], charge[1]) and int(charge[0].argmin()) == long[6]
    assert torch.equal(charge[2:], torch.zeros(2, vocab))  # `short` ended at 5 tokens


def test_guidance_alone_writes_what_a_one_token_a_slot_memory_pools(tiny):
    """With one token a chunk every step is a chunk's last, so a strong guide decides each token:
    a reader with random weights then writes exactly the pooled source, each row at its own length."""
    rows = [source(tiny, 8), source(tiny, 16)[8:14]]
    memory = pooled(tiny, rows, 8)
    unguided = generate(tiny.network, memory, 8).tolist()
    guided = generate(tiny.network, memory, 8, Decoding(beams=1, guidance=50.0), lengths=[8, 6]).tolist()
    assert guided[0] == rows[0] and guided[1][:6] == rows[1]
    assert unguided[0] != rows[0]
    beams = generate(tiny.network, memory, 8, Decoding(beams=3, guidance=50.0), lengths=[8, 6]).tolist()
    assert beams[0] == rows[0] and beams[1][:6] == rows[1]


def test_a_length_per_memory_row_is_required(tiny):
    memory = torch.zeros(2, 4, table(tiny).shape[1])
    with pytest.raises(ValueError, match="one positive segment length per memory row"):
        PoolGuide(memory, [8], table(tiny), 1.0)
    with pytest.raises(ValueError, match="one positive segment length per memory row"):
        PoolGuide(memory, [8, 0], table(tiny), 1.0)
    with pytest.raises(ValueError, match="spread must be from 0 to 1"):
        PoolGuide(memory, [8, 8], table(tiny), 1.0, spread=1.5)
    with pytest.raises(ValueError, match="bag must be a charge of 0 or more nats"):
        PoolGuide(memory, [8, 8], table(tiny), 1.0, bag=-1.0)



def test_a_token_its_chunk_has_no_more_of_pays_the_bag_charge_on_top_of_the_distance(tiny):
    ids = source(tiny, 12)
    memory = pooled(tiny, [ids], 3)  # 4 tokens a chunk
    with_bag = PoolGuide(memory, [12], table(tiny), strength=2.0, bag=5.0)
    without = PoolGuide(memory, [12], table(tiny), strength=2.0, bag=0.0)
    vocab = table(tiny).shape[0]
    for step in (0, 2, 5):  # first token of chunk 0, mid chunk 0, inside chunk 1
        prefix = torch.tensor([ids[:step]])
        extra = (without(prefix, torch.zeros(1, vocab)) - with_bag(prefix, torch.zeros(1, vocab)))[0]
        chunk = step // 4
        left = ids[chunk * 4:(chunk + 1) * 4]
        for t in ids[chunk * 4:step]:
            left.remove(t)  # written already
        charged = {v for v in range(vocab) if float(extra[v]) == pytest.approx(5.0, abs=1e-4)}
        assert charged == set(range(vocab)) - set(left)
        assert all(float(extra[v]) == pytest.approx(0.0, abs=1e-4) for v in left)


def test_a_strong_bag_writes_each_chunk_as_its_own_tokens(tiny):
    """With the distance charge negligible and the bag charge large, a reader with random weights
    still writes every chunk as exactly the tokens its slot pools, in whatever order it likes."""
    rows = [source(tiny, 12), source(tiny, 24)[12:20]]
    memory = pooled(tiny, rows, 4)
    for beams in (1, 3):
        decoding = Decoding(beams=beams, guidance=1e-6, bag=50.0)
        out = generate(tiny.network, memory, 12, decoding, lengths=[12, 8]).tolist()
        for row, expansion, per in ((rows[0], out[0], 3), (rows[1], out[1], 2)):
            for j in range(4):
                assert sorted(expansion[j * per:(j + 1) * per]) == sorted(row[j * per:(j + 1) * per])
    unguided = generate(tiny.network, memory, 12).tolist()
    assert sorted(unguided[0][:3]) != sorted(rows[0][:3])
