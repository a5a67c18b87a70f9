"""Proof that gradients flow through the memory into reconstruction: overfit, then expand exactly."""

import pytest
import torch

from r3mem.api import R3Mem
from r3mem.weights import load_trainable_state, trainable_state

TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune."


def overfit(r3: R3Mem, text: str, m: int, steps: int, lr: float) -> int:
    """Train memory + adapters on one text until teacher-forced accuracy is 1; return steps used."""
    net = r3.network.train()
    ids = torch.tensor([r3.tokenize(text)])
    opt = torch.optim.Adam(net.trainable_parameters(), lr=lr)
    used = 0
    for _ in range(steps):
        used += 1
        stats = net.read(net.write(net.initial(1, m), ids), ids)
        opt.zero_grad()
        stats.loss.backward()
        opt.step()
        if stats.n_correct == stats.n_tokens and stats.loss.item() < 0.05:
            break
    net.eval()
    return used


@pytest.mark.slow  # hundreds of optimiser steps
def test_tiny_model_overfits_and_reconstructs_exactly(tiny):
    text = tiny.detokenize(tiny.tokenize(TEXT)[: tiny.config.segment_len])
    overfit(tiny, text, m=4, steps=300, lr=1e-2)
    memory = tiny.compress(text, ratio=4)
    assert tiny.expand(memory) == text


@pytest.mark.real_model
def test_real_model_overfits_and_reconstructs_exactly(real):
    untouched = {k: v.clone() for k, v in trainable_state(real.network).items()}
    try:
        steps = overfit(real, TEXT, m=8, steps=60, lr=1e-3)
        memory = real.compress(TEXT, ratio=real.config.segment_len / 8)
        assert real.expand(memory) == TEXT, f"not exact after {steps} steps"
    finally:
        load_trainable_state(real.network, untouched)  # the session fixture is shared
