"""Invariants of the memory network on the tiny model."""

import torch
from tests.conftest import TINY_MEMORY, tiny_base

from r3mem.api import R3Mem
from r3mem.memory_net import MemoryNetwork, chunk_pool
from r3mem.weights import trainable_state


def _ids(r3: R3Mem, n: int, offset: int = 0) -> torch.Tensor:
    ids = r3.tokenize(r3.detokenize(r3.tokenize(__doc__ * 40)))
    return torch.tensor(ids[offset : offset + n])


def test_write_shapes_for_every_memory_size(tiny):
    net = tiny.network
    seg = _ids(tiny, 16).unsqueeze(0).repeat(3, 1)  # (3, 16)
    for m in (1, 2, 4, 8):
        out = net.write(net.initial(3, m), seg)
        assert out.shape == (3, m, net.hidden_size)


def test_memory_size_is_independent_of_history_length(tiny):
    short = tiny.compress(tiny.detokenize(_ids(tiny, 10).tolist()), ratio=4)
    long = tiny.compress(tiny.detokenize(_ids(tiny, 16 * 12).tolist()), ratio=4)
    assert len(short) == 1 and len(long) == 12
    assert short.snapshots.shape[1:] == long.snapshots.shape[1:] == (4, 64)


def test_recurrence_carries_earlier_segments(tiny):
    net = tiny.network
    a, b, c = _ids(tiny, 16), _ids(tiny, 16, 16), _ids(tiny, 16, 32)
    with torch.no_grad():
        via_a = list(net.compress([a, c], 4))[-1]
        via_b = list(net.compress([b, c], 4))[-1]
        again = list(net.compress([a, c], 4))[-1]
    assert not torch.allclose(via_a, via_b), "the last snapshot must depend on earlier segments"
    assert torch.equal(via_a, again)


def test_padding_mask_matches_unpadded(tiny):
    net = tiny.network
    short, full = _ids(tiny, 9), _ids(tiny, 16, 20)
    padded = torch.stack([torch.cat([short, torch.zeros(7, dtype=torch.long)]), full])
    mask = torch.tensor([[1] * 9 + [0] * 7, [1] * 16])
    with torch.no_grad():
        batch = net.write(net.initial(2, 4), padded, mask)
        alone = net.write(net.initial(1, 4), short.unsqueeze(0))
    torch.testing.assert_close(batch[0], alone[0], atol=1e-4, rtol=1e-4)


def test_read_counts_only_target_tokens(tiny):
    net = tiny.network
    target = _ids(tiny, 12).unsqueeze(0).repeat(2, 1)
    mask = torch.tensor([[1] * 12, [1] * 7 + [0] * 5])
    stats = net.read(net.initial(2, 4), target, mask)
    assert stats.n_tokens == 19
    assert 0 <= stats.n_correct <= 19 and stats.loss.item() > 0


def test_joint_loss_reaches_both_adapters_and_memory_parameters(tiny):
    net = tiny.network.train()
    seg = _ids(tiny, 16).unsqueeze(0)
    memory = net.write(net.initial(1, 4), seg)
    net.read(memory, seg).loss.backward()
    grads = {n: p.grad for n, p in net.lm.named_parameters() if "lora_B" in n}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if ".compress" in n)
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if ".expand" in n)
    for name in ("initial_memory", "write_tokens", "markers"):
        assert getattr(net, name).grad is not None and getattr(net, name).grad.abs().sum() > 0
    base_grads = [p.grad for n, p in net.lm.named_parameters() if "lora_" not in n]
    assert all(g is None for g in base_grads), "the base model must stay frozen"


def test_same_seed_same_network():
    a = trainable_state(MemoryNetwork(tiny_base().model, TINY_MEMORY))
    b = trainable_state(MemoryNetwork(tiny_base().model, TINY_MEMORY))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_chunk_pool_covers_each_token_once_in_contiguous_chunks():
    tokens = torch.randn(2, 10, 3)
    mask = torch.tensor([[1] * 10, [1] * 7 + [0] * 3])
    pooled = chunk_pool(tokens, 4, mask)
    for row, n in enumerate((10, 7)):
        # chunk j starts at the first t with floor(t*4/n) >= j
        bounds = [next(t for t in range(n + 1) if t == n or (t * 4) // n >= j) for j in range(5)]
        for j in range(4):
            part = tokens[row, bounds[j] : bounds[j + 1]]
            assert len(part) in (n // 4, n // 4 + 1)
            torch.testing.assert_close(pooled[row, j], part.sum(0) / len(part) ** 0.5)
    assert bounds[-1] == 7, "padded positions belong to no chunk"


def test_memory_is_pooled_embeddings_plus_gated_write_states(tiny):
    """With the gate closed the memory is exactly the pooled segment; open, the write states add on."""
    net = tiny.network
    ids = _ids(tiny, 16).unsqueeze(0)
    pooled = chunk_pool(net.embed(ids), 4)
    with torch.no_grad():
        net.projection.write_gate.fill_(0.0)
        closed = net.write(net.initial(1, 4), ids)
        net.projection.write_gate.fill_(1.0)
        opened = net.write(net.initial(1, 4), ids)
    torch.testing.assert_close(closed, pooled)
    assert not torch.allclose(opened, pooled)
