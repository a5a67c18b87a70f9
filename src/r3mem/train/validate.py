"""Validation during training, on books the run never trains on, and the loss-curve plot."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from statistics import fmean

import torch

from r3mem.decode.beam import GREEDY, generate
from r3mem.decode.options import DEFAULT_GUIDANCE
from r3mem.fidelity import aligned_token_accuracy, token_accuracy
from r3mem.memory_net import MemoryNetwork
from r3mem.train.config import TrainConfig
from r3mem.train.data import TokenCorpus, step_rng

VAL_SEG_LEN = 128
# greedy, held to the slots by the shipped pool guidance (its spread and bag too)
_GUIDED = replace(GREEDY, guidance=DEFAULT_GUIDANCE)


@torch.no_grad()
def validate(net: MemoryNetwork, corpus: TokenCorpus, cfg: TrainConfig) -> dict[str, float]:
    """Reconstruction at ratios 4 and 8, teacher-forced and free-running, and LM NLL with vs
    without memory.

    Teacher-forced accuracy reads the source prefix; the free-running (greedy) expansion reads
    its own, as `r3mem eval reconstruct` does, so a slip that shifts every later token shows
    there (`gen_acc`, position-wise) and not in `rec_acc`. `gen_aligned` forgives the shift.
    `guided_acc` is the same greedy expansion held to the pooled slots by the shipped decoding's
    pool guidance (`r3mem.decode.pool_guidance`), so the curve also follows what users get, at a
    fraction of the card's beam-search cost.
    The windows are the same at every evaluation (fixed seed), so the curve is comparable.
    """
    device = net.initial_memory.device
    rng = step_rng(cfg.seed, -1 % (2**31), 99)
    windows = torch.as_tensor(corpus.windows(rng, cfg.val_windows, 2 * VAL_SEG_LEN), dtype=torch.long,
                              device=device)
    first, second = windows[:, :VAL_SEG_LEN], windows[:, VAL_SEG_LEN:]
    out: dict[str, float] = {}
    for ratio in (4, 8):
        memory = net.write(net.initial(len(windows), VAL_SEG_LEN // ratio), first)
        rec = net.read(memory, first)
        out[f"rec_acc_r{ratio}"] = round(rec.n_correct / rec.n_tokens, 4)
        out[f"rec_nll_r{ratio}"] = round(float(rec.loss), 4)
        out[f"lm_nll_memory_r{ratio}"] = round(float(net.read(memory, second, marker="continue").loss), 4)
        pairs = list(zip(first.tolist(), generate(net, memory, VAL_SEG_LEN, GREEDY).tolist(), strict=True))
        out[f"gen_acc_r{ratio}"] = round(sum(token_accuracy(r, h) for r, h in pairs) / len(pairs), 4)
        out[f"gen_aligned_r{ratio}"] = round(sum(aligned_token_accuracy(r, h) for r, h in pairs) / len(pairs), 4)
        guided = zip(first.tolist(), generate(net, memory, VAL_SEG_LEN, _GUIDED).tolist(),
                     strict=True)
        out[f"guided_acc_r{ratio}"] = round(fmean(token_accuracy(r, h) for r, h in guided), 4)
    with net.adapter(None):
        hidden = net.causal_lm.model(input_ids=second).last_hidden_state
        # position i predicts token i+1; the first token has no context at all
        plain = net.token_nll(hidden[:, :-1], second[:, 1:], None)
    out["lm_nll_no_context"] = round(float(plain.loss), 4)
    return out


def plot_curves(log_path: Path, png_path: Path) -> None:
    """Write the loss-curve PNG of a run from its JSONL log."""
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    fig = curve_figure(rows)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def curve_figure(rows: list[dict]):
    """Training losses, learning rate and validation accuracy against step, from log rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_rows = [r for r in rows if not r.get("val") and "event" not in r]
    val_rows = [r for r in rows if r.get("val")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("rec", "lm", "hier", "cyc"):
        pts = [(r["step"], r[key]) for r in train_rows if key in r]
        if pts:
            left.plot(*zip(*pts, strict=True), label=f"L_{key}", linewidth=0.8)
    left.set(xlabel="step", ylabel="loss", title="training losses", yscale="log")
    left.legend(loc="upper left")
    # The rate on a second axis: the run's phases (warmups, anneals, forks) explain its steps.
    rates = [(r["step"], r["lr"]) for r in train_rows if "lr" in r]
    if rates:
        rate_axis = left.twinx()
        rate_axis.plot(*zip(*rates, strict=True), color="grey", linestyle="--", linewidth=0.8, label="lr")
        rate_axis.set(ylabel="learning rate", yscale="log")
        rate_axis.legend(loc="upper right")
    # free-running (gen_, greedy) dashed and pool-guided (guided_) dotted: both joined the log later
    # than teacher-forced (rec_)
    styles = {"rec": "-", "gen": "--", "guided": ":"}
    for key in ("rec_acc_r4", "rec_acc_r8", "gen_acc_r4", "gen_acc_r8", "guided_acc_r4", "guided_acc_r8"):
        pts = [(r["step"], r[key]) for r in val_rows if key in r]
        if pts:
            right.plot(*zip(*pts, strict=True), marker="o", label=key, linestyle=styles[key.split("_")[0]])
    right.set(xlabel="step", ylabel="token accuracy", title="validation (held-out books)")
    right.legend()
    fig.tight_layout()
    return fig
