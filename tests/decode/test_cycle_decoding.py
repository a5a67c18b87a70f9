"""Cycle-consistent expansion on the tiny model: the candidate pool, the choice, and the plumbing
from a multi-segment memory (each segment re-compressed from the snapshot before it)."""

import pytest
import torch
from tests.conftest import CORPUS

from r3mem.decode import cycle_decoding
from r3mem.decode.beam import generate
from r3mem.decode.cycle_decoding import choose, draw
from r3mem.decode.options import Decoding
from r3mem.errors import InvalidInput
from r3mem.verify import segment_digest


def source_segments(tiny, count):
    ids = tiny.tokenize(CORPUS)
    seg = tiny.config.segment_len
    return [ids[i * seg : (i + 1) * seg] for i in range(count)]


def test_pool_holds_the_beams_then_the_samples_and_the_top_beam_is_beam_search(tiny):
    memory = tiny.network.write(tiny.network.initial(2, 4), torch.tensor(source_segments(tiny, 2)))
    pool = draw(tiny.network, memory, 16, Decoding(beams=3, samples=5, guidance=0.0))
    assert pool.shape == (2, 8, 16)
    assert torch.equal(pool[:, 0], generate(tiny.network, memory, 16, Decoding(beams=3, guidance=0.0)))


def test_sampling_is_seeded_per_call_and_leaves_the_callers_rng_alone(tiny):
    memory = tiny.network.write(tiny.network.initial(1, 4), torch.tensor(source_segments(tiny, 1)))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = draw(tiny.network, memory, 16, Decoding(beams=1, samples=6, guidance=0.0))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first, draw(tiny.network, memory, 16, Decoding(beams=1, samples=6, guidance=0.0)))
    assert len({tuple(row) for row in first[0, 1:].tolist()}) > 1  # the samples differ from one another


def test_a_segment_draws_the_same_samples_alone_as_in_a_batch(tiny):
    """Which segments a recall expands together depends on its query; a segment's text must not."""
    memory = tiny.network.write(tiny.network.initial(3, 4), torch.tensor(source_segments(tiny, 3)))
    decoding = Decoding(beams=1, samples=4, guidance=0.0)
    together = draw(tiny.network, memory, 16, decoding)
    for b in range(3):
        assert torch.equal(draw(tiny.network, memory[b : b + 1], 16, decoding)[0], together[b])


@pytest.fixture
def no_margin(monkeypatch):
    """Every candidate competes on distance: the untrained tiny model reads the source no better
    than a stranger, so the likelihood margin would otherwise decide these tests."""
    monkeypatch.setattr(cycle_decoding, "NLL_MARGIN", float("inf"))


def test_the_source_among_candidates_is_chosen_by_its_memory_alone(tiny, no_margin):
    """The source re-compresses to its own snapshot (distance 0); strangers do not."""
    source = source_segments(tiny, 1)[0]
    read = tiny.network.initial(1, 4)[0]
    snapshot = tiny.network.write(read.unsqueeze(0), torch.tensor([source]))[0]
    others = torch.randint(1, 300, (3, len(source)))
    candidates = torch.cat([others[:2], torch.tensor([source]), others[2:]])
    choice = choose(tiny.network, read, snapshot, candidates)
    assert choice.ids == source and choice.distance < 1e-10 and choice.verified is None


def test_only_candidates_that_read_nearly_as_well_as_the_likeliest_compete_on_distance(tiny, monkeypatch):
    source = source_segments(tiny, 1)[0]
    read = tiny.network.initial(1, 4)[0]
    snapshot = tiny.network.write(read.unsqueeze(0), torch.tensor([source]))[0]
    strangers = torch.randint(1, 300, (2, len(source)))
    candidates = torch.cat([strangers, torch.tensor([source])])
    distances = [float((tiny.network.write(read.unsqueeze(0), c.unsqueeze(0))[0] - snapshot).pow(2).mean())
                 for c in strangers]
    nearer_stranger = int(torch.tensor(distances).argmin())
    # the source is nearest, but reads NLL_MARGIN + 0.05 nats worse than the likeliest candidate
    nll = torch.tensor([2.0, 2.0, 2.0 + cycle_decoding.NLL_MARGIN + 0.05])
    monkeypatch.setattr(cycle_decoding, "mean_nll", lambda net, snap, cands: nll)
    assert choose(tiny.network, read, snapshot, candidates).ids == strangers[nearer_stranger].tolist()
    nll[2] = 2.0 + cycle_decoding.NLL_MARGIN - 0.05  # within the margin: its memory decides
    assert choose(tiny.network, read, snapshot, candidates).ids == source


def test_mean_nll_is_each_candidates_own_teacher_forced_loss(tiny):
    memory = tiny.network.write(tiny.network.initial(1, 4), torch.tensor(source_segments(tiny, 1)))[0]
    candidates = torch.randint(1, 300, (3, 16))
    per_row = cycle_decoding.mean_nll(tiny.network, memory, candidates)
    alone = [float(tiny.network.read(memory.unsqueeze(0), c.unsqueeze(0)).loss) for c in candidates]
    assert torch.allclose(per_row, torch.tensor(alone), atol=1e-5)


def test_a_digest_match_wins_whatever_its_distance(tiny, no_margin):
    source = source_segments(tiny, 1)[0]
    read = tiny.network.initial(1, 4)[0]
    candidates = torch.cat([torch.randint(1, 300, (2, len(source))), torch.tensor([source])])
    stranger = tiny.network.write(read.unsqueeze(0), candidates[:1])[0]  # the memory of candidate 0
    digest = torch.tensor(list(segment_digest(source)), dtype=torch.uint8)
    assert choose(tiny.network, read, stranger, candidates).ids == candidates[0].tolist()
    choice = choose(tiny.network, read, stranger, candidates, digest)
    assert choice.ids == source and choice.verified is True
    assert choose(tiny.network, read, stranger, candidates[:2], digest).verified is False


def test_a_digest_match_re_compresses_only_the_match(tiny, monkeypatch):
    """The digest already proves the match is the source; the other candidates' writes are waste."""
    source = source_segments(tiny, 1)[0]
    read = tiny.network.initial(1, 4)[0]
    snapshot = tiny.network.write(read.unsqueeze(0), torch.tensor([source]))[0]
    candidates = torch.cat([torch.randint(1, 300, (3, len(source))), torch.tensor([source])])
    digest = torch.tensor(list(segment_digest(source)), dtype=torch.uint8)
    written = []
    real_write = tiny.network.write
    monkeypatch.setattr(tiny.network, "write", lambda memory, ids: written.append(len(ids)) or real_write(memory, ids))
    choice = choose(tiny.network, read, snapshot, candidates, digest)
    assert choice.ids == source and choice.verified is True and choice.distance < 1e-10
    assert written == [1]
    written.clear()
    assert choose(tiny.network, read, snapshot, candidates[:3], digest).verified is False
    assert written == [3]


@pytest.fixture
def with_source_in_pool(monkeypatch):
    """Candidates as drawn, plus the true source of each segment in the middle of the pool."""
    truth: list[list[int]] = []

    def drawn(network, snapshots, n_tokens, decoding, lengths=None):
        pool = draw(network, snapshots, n_tokens, decoding, lengths)
        wanted = [ids + [0] * (n_tokens - len(ids)) for ids in truth[: len(snapshots)]]
        del truth[: len(snapshots)]
        return torch.cat([pool[:, :1], torch.tensor(wanted).unsqueeze(1), pool[:, 1:]], 1)

    monkeypatch.setattr(cycle_decoding, "draw", drawn)
    return truth


def test_each_segment_is_re_compressed_from_the_snapshot_before_it(tiny, monkeypatch):
    """A snapshot was written from the one before it (the first from the initial memory), so
    that is the memory its candidates are re-compressed from; any other makes every distance wrong."""
    seen = []
    real_choose = cycle_decoding.choose
    monkeypatch.setattr(cycle_decoding, "choose",
                        lambda net, read, snap, cands, digest=None: seen.append((read, snap))
                        or real_choose(net, read, snap, cands, digest))
    memory = tiny.compress(CORPUS[:300], ratio=4)
    assert len(memory) >= 3
    tiny.expand_ids(memory, decoding=Decoding(beams=1, samples=1))
    expected = [tiny.network.initial(1, memory.memory_tokens)[0]] + [s.float() for s in memory.snapshots[:-1]]
    assert len(seen) == len(memory)
    for (read, snap), want, stored in zip(seen, expected, memory.snapshots, strict=True):
        assert torch.equal(read, want) and torch.equal(snap, stored.float())
    seen.clear()
    tiny.expand_ids(memory, segment=2, decoding=Decoding(beams=1, samples=1))
    assert len(seen) == 1 and torch.equal(seen[0][0], memory.snapshots[1].float())


def test_the_source_of_a_later_segment_is_found_among_the_candidates(tiny, with_source_in_pool, no_margin):
    text = CORPUS[:300]
    memory = tiny.compress(text, ratio=4)
    ids = tiny.tokenize(text)
    with_source_in_pool.extend(list(tiny.segments(ids)))
    memory.segment_digests = None  # by distance alone
    parts = tiny.expand_ids(memory, decoding=Decoding(beams=2, samples=2))
    assert [t for p in parts for t in p] == ids


def test_expansion_with_samples_verifies_when_the_source_is_drawn(tiny, with_source_in_pool):
    memory = tiny.compress(CORPUS[:300], ratio=4)
    with_source_in_pool.extend(list(tiny.segments(tiny.tokenize(CORPUS[:300]))))
    result = tiny.expand_verified(memory, decoding=Decoding(beams=1, samples=1))
    assert result.exact and result.text == CORPUS[:300]
    # the untrained model alone regenerates nothing right
    greedy = tiny.expand_verified(memory, decoding=Decoding(beams=1))
    assert not greedy.exact


def test_one_segment_of_a_memory_can_be_chosen_alone(tiny, with_source_in_pool, no_margin):
    memory = tiny.compress(CORPUS[:300], ratio=4)
    segments = list(tiny.segments(tiny.tokenize(CORPUS[:300])))
    with_source_in_pool.append(segments[2])
    memory.segment_digests = None
    assert tiny.expand_ids(memory, segment=2, decoding=Decoding(beams=1, samples=3)) == [segments[2]]


def test_selection_without_the_read_memories_is_refused(tiny):
    memory = tiny.compress(CORPUS[:100], ratio=4)
    with pytest.raises(InvalidInput, match="needs the memories"):
        tiny.expand_snapshots(memory.snapshots, memory.token_counts, None, decoding=Decoding(samples=1))
    parts = tiny.expand_snapshots(memory.snapshots, memory.token_counts, None, decoding=Decoding(beams=1))
    assert len(parts) == len(memory)
