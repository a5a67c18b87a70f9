"""The training objective: registered losses over one shared forward pass of a window.

Each loss is one module in this package, registered under the name its config weight carries
(`w_<name>` in `TrainConfig`): `rec`, `lm`, `hier`, `cyc`. A new loss is a new file with
`@register("name")` and a `w_name` field; nothing else changes.

`Objective.forward` writes the window's segments into memory once (`WindowPass`) and lets every
loss with a positive weight read what it needs from that pass. Wrapping all of it in one
`forward` lets Accelerate (DDP) see a single forward call per micro-batch, so gradients of both
adapters and the memory tables synchronise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from r3mem.memory_net import MemoryNetwork, ReadStats
from r3mem.padding import pad

__all__ = ["LOSSES", "Objective", "WindowPass", "pad", "register"]

LossFn = Callable[["WindowPass"], dict[str, Tensor]]
LOSSES: dict[str, LossFn] = {}  # name -> loss, in the order the objective evaluates them


def register(name: str) -> Callable[[LossFn], LossFn]:
    def add(fn: LossFn) -> LossFn:
        LOSSES[name] = fn
        return fn
    return add


@dataclass
class WindowPass:
    """What every loss may read: the window's segments, their memories and reconstructions."""

    network: MemoryNetwork
    segments: list[Tensor]  # (B, L) each, oldest first
    memories: list[Tensor]  # (B, m, d): the memory after segments 1..t
    recs: list[ReadStats]  # L_rec's read of each segment from its own memory
    hier: list[tuple[list[int], list[int], list[int]]] | None
    hier_m: int


# Importing the modules registers their losses, in this order (the order of the log's columns).
for _module in ("rec", "lm", "cyc", "hier"):
    importlib.import_module(f"{__name__}.{_module}")


class Objective(nn.Module):
    """Computes every weighted loss of one micro-batch; returns a dict of scalars."""

    def __init__(self, network: MemoryNetwork, weights: dict[str, float], window_segments: int = 2) -> None:
        super().__init__()
        unknown = sorted(set(weights) - set(LOSSES))
        if unknown:
            raise ValueError(f"no loss registered as {', '.join(unknown)} (known: {', '.join(LOSSES)})")
        self.network = network
        self.weights = {name: weights.get(name, 0.0) for name in LOSSES}
        self.window_segments = window_segments

    def forward(self, windows: Tensor, m: int, hier: list[tuple[list[int], list[int], list[int]]] | None,
                hier_m: int, own_prefix: Tensor | None = None) -> dict[str, Tensor]:
        """`windows` (B, window_segments * L): consecutive segments, written into memory in turn.

        `own_prefix` (B, window_segments, L-1), bool: prefix positions of L_rec that read the
        model's own guess instead of the source token (scheduled sampling); None reads the source.
        """
        net, w = self.network, self.weights
        segments = list(windows.view(windows.shape[0], self.window_segments, -1).unbind(1))  # (B, L) each
        memories, memory = [], net.initial(windows.shape[0], m)
        for segment in segments:
            memory = net.write(memory, segment)  # (B, m, d)
            memories.append(memory)
        prefixes: list[Tensor | None] = [None] * len(segments)
        if own_prefix is not None:
            prefixes = [torch.where(own_prefix[:, i], net.guess(mem, seg)[:, :-1], seg[:, :-1])
                        for i, (mem, seg) in enumerate(zip(memories, segments, strict=True))]
        # L_cyc reads the first segment's reconstruction logits: kept only when it will.
        recs = [net.read(mem, seg, keep_logits=i == 0 and w["cyc"] > 0, prefix_ids=prefix)
                for i, (mem, seg, prefix) in enumerate(zip(memories, segments, prefixes, strict=True))]
        batch = WindowPass(net, segments, memories, recs, hier, hier_m)
        out: dict[str, Tensor] = {}
        for name, loss in LOSSES.items():
            if name == "rec" or w[name] > 0:  # rec is always reported: accuracy comes with it
                out.update(loss(batch))
        total = sum(w[k] * v for k, v in out.items() if k in w) + (
            w["rec"] * out["rec_units"] if "rec_units" in out else 0
        )
        out["total"] = cast(Tensor, total)  # a sum of tensors; `sum` types its 0 start as int
        return out
