"""Greedy pursuit reads a chunk's tokens back from their summed embeddings; the counts left to write."""

import pytest
import torch

from r3mem.decode.slot_bags import left_in_bag, recover_bags


def table(vocab=300, dim=64, seed=0):
    return torch.randn(vocab, dim, generator=torch.Generator().manual_seed(seed))


def test_pursuit_returns_each_chunks_multiset_in_any_order_padded_past_its_count():
    emb = table()
    chunks = [[5, 17, 230, 42], [8, 8, 91], [299], [0, 1]]  # a repeated token, uneven counts
    sums = torch.stack([emb[torch.tensor(c)].sum(0) for c in chunks])
    bags = recover_bags(sums, torch.tensor([len(c) for c in chunks]), emb)
    assert bags.shape == (4, 4)
    for row, chunk in zip(bags.tolist(), chunks, strict=True):
        assert sorted(t for t in row if t >= 0) == sorted(chunk)
        assert row[len(chunk):] == [-1] * (4 - len(chunk))


def test_pursuit_survives_a_small_perturbation_of_the_sum():
    """A slot is the pooled sum plus a small write state: the bag still comes back."""
    emb = table(seed=1)
    chunk = [3, 140, 77, 250, 12, 9, 199, 60]
    noisy = emb[torch.tensor(chunk)].sum(0) + 0.1 * torch.randn(64, generator=torch.Generator().manual_seed(2))
    bag = recover_bags(noisy.unsqueeze(0), torch.tensor([8]), emb)[0].tolist()
    assert sorted(bag) == sorted(chunk)


def test_pursuit_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="need \\(N, d\\) sums and \\(N,\\) counts"):
        recover_bags(torch.zeros(3, 8), torch.tensor([1, 2]), table(dim=8))


def test_a_token_stays_in_its_bag_until_written_in_the_bags_chunk_as_often_as_the_bag_holds_it():
    bags = torch.tensor([[4, 4, 7], [2, -1, -1]])
    written = torch.tensor([[4, 9, 7], [2, 2, 5]])
    in_chunk = torch.tensor([[True, True, False], [False, True, True]])
    tokens, left = left_in_bag(bags, written, in_chunk)
    assert tokens[0].tolist() == [4, 4, 7]
    assert left[0].tolist() == [1, 0, 1]  # one of two 4s written, counted once; 7 was another chunk's
    assert left[1].tolist() == [0, 0, 0]  # the one 2 used up; padding is never in the bag
    _, fresh = left_in_bag(bags, written[:, :0], in_chunk[:, :0])
    assert fresh.tolist() == [[1, 0, 1], [1, 0, 0]]  # each distinct token once, however often held
