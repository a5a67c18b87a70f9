"""The training objective against its definition, written out segment by segment."""

import pytest
import torch
from tests.conftest import TINY_MEMORY, tiny_base

from r3mem.api import R3Mem
from r3mem.errors import InvalidInput
from r3mem.train.config import TrainConfig
from r3mem.train.losses import Objective

WEIGHTS = {"rec": 1.0, "lm": 0.5, "hier": 0.0, "cyc": 0.1}


def _net():
    r3 = R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move off the identity start, so every term depends on the memory
        for p in r3.network.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    return r3.network


def _spelled_out(net, segments, m):
    """L_rec over every segment from its own memory; L_lm of segment t from the memory of 1..t-1."""
    memories, memory = [], net.initial(segments[0].shape[0], m)
    for seg in segments:
        memory = net.write(memory, seg)
        memories.append(memory)
    recs = [net.read(mem, seg) for mem, seg in zip(memories, segments, strict=True)]
    rec = sum(r.nll_sum for r in recs) / sum(r.n_tokens for r in recs)
    lm = torch.stack([net.read(memories[t - 1], segments[t], marker="continue").loss
                      for t in range(1, len(segments))]).mean()
    return rec, lm


@pytest.mark.parametrize("k", [2, 3])
def test_objective_matches_its_definition(k):
    net = _net()
    windows = torch.randint(5, 200, (2, k * 8), generator=torch.Generator().manual_seed(k))
    with torch.no_grad():
        out = Objective(net, WEIGHTS, window_segments=k)(windows, 2, None, 2)
        rec, lm = _spelled_out(net, list(windows.view(2, k, 8).unbind(1)), 2)
    assert torch.allclose(out["rec"], rec) and torch.allclose(out["lm"], lm)
    assert torch.allclose(out["total"], rec + 0.5 * lm + 0.1 * out["cyc"])


def test_a_longer_window_trains_the_memory_across_segments():
    """With three segments, L_lm of the third reads a memory that went through the first."""
    net = _net()
    windows = torch.randint(5, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    changed = windows.clone()
    changed[:, :8] = torch.randint(5, 200, (2, 8), generator=torch.Generator().manual_seed(1))
    two = Objective(net, {**WEIGHTS, "cyc": 0.0}, window_segments=2)
    three = Objective(net, {**WEIGHTS, "cyc": 0.0}, window_segments=3)
    with torch.no_grad():
        # the third segment's term alone: 2 * mean(lm2, lm3) - lm2
        def third(ids):
            return 2 * three(ids, 2, None, 2)["lm"] - two(ids[:, :16], 2, None, 2)["lm"]
        assert not torch.allclose(third(windows), third(changed))


def test_scheduled_sampling_reads_own_guesses_where_marked_and_scores_the_source():
    net = _net()
    windows = torch.randint(5, 200, (2, 16), generator=torch.Generator().manual_seed(5))
    objective = Objective(net, {**WEIGHTS, "cyc": 0.0})
    segments = list(windows.view(2, 2, 8).unbind(1))
    none = torch.zeros(2, 2, 7, dtype=torch.bool)
    every = torch.ones(2, 2, 7, dtype=torch.bool)
    with torch.no_grad():
        plain = objective(windows, 2, None, 2)
        assert torch.equal(objective(windows, 2, None, 2, none)["rec"], plain["rec"])
        memories = [net.write(net.initial(2, 2), segments[0])]
        memories.append(net.write(memories[0], segments[1]))
        guesses = [net.guess(mem, seg) for mem, seg in zip(memories, segments, strict=True)]
        # the guess is the teacher-forced argmax: it agrees with the source where the read scores a hit
        read = net.read(memories[0], segments[0])
        assert int((guesses[0] == segments[0]).sum()) == read.n_correct
        own = [net.read(mem, seg, prefix_ids=g[:, :-1])
               for mem, seg, g in zip(memories, segments, guesses, strict=True)]
        expected = sum(r.nll_sum for r in own) / sum(r.n_tokens for r in own)
        assert torch.allclose(objective(windows, 2, None, 2, every)["rec"], expected)
    assert not all(torch.equal(g[:, :-1], s[:, :-1]) for g, s in zip(guesses, segments, strict=True)), \
        "the untrained guesses must differ somewhere, or the test shows nothing"


def test_config_refuses_a_scheduled_sampling_rate_outside_0_1():
    with pytest.raises(InvalidInput, match="rec_own_prefix"):
        TrainConfig(rec_own_prefix=1.5)


def test_window_segments_must_be_at_least_two():
    with pytest.raises(InvalidInput, match="window_segments"):
        TrainConfig(window_segments=1)


def test_activation_checkpointing_gives_the_same_gradients():
    """The re-run in backward must use the adapter of the pass it re-runs, not the last one set."""
    windows = torch.randint(5, 200, (2, 16), generator=torch.Generator().manual_seed(4))

    def gradients(checkpointed: bool) -> list[torch.Tensor]:
        net = _net()
        net.activation_checkpointing = checkpointed
        Objective(net, WEIGHTS)(windows, 2, None, 2)["total"].backward()
        return [p.grad for p in net.trainable_parameters()]

    plain, recomputed = gradients(False), gradients(True)
    assert all(g is not None for g in plain)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, recomputed, strict=True))


def test_every_registered_loss_has_a_config_weight_and_back():
    from dataclasses import fields

    from r3mem.train.losses import LOSSES

    weights = {f.name.removeprefix("w_") for f in fields(TrainConfig) if f.name.startswith("w_")}
    assert weights == set(LOSSES) == {"rec", "lm", "hier", "cyc"}


def test_a_new_loss_is_one_registration_and_a_weight(monkeypatch):
    """A loss added to the registry is evaluated and weighted into the total, with nothing else changed."""
    from r3mem.train import losses

    monkeypatch.setitem(losses.LOSSES, "norm", lambda batch: {"norm": batch.memories[-1].pow(2).mean()})
    net = _net()
    windows = torch.randint(5, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    plain = Objective(net, WEIGHTS, window_segments=2)(windows, 4, None, 4)
    extra = Objective(net, {**WEIGHTS, "norm": 2.0}, window_segments=2)(windows, 4, None, 4)
    assert torch.allclose(extra["total"], plain["total"] + 2.0 * extra["norm"])
    with pytest.raises(ValueError, match="no loss registered as typo"):
        Objective(net, {"typo": 1.0})
