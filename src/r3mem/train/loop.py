"""The training loop: Accelerate, exact resume, validation, JSONL logs, a loss-curve PNG.

Resume is exact: the state directory holds the trainable weights and the AdamW
moments (safetensors, never pickle) and the step; batches are drawn from an RNG
seeded by (seed, step), so a stopped and resumed run follows the same path.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from r3mem.api import R3Mem
from r3mem.machine import peak_rss_gb, run_info, usable_precision
from r3mem.train.config import TrainConfig
from r3mem.train.data import HierarchyPairs, TokenCorpus, load_texts, step_rng
from r3mem.train.losses import LOSSES, Objective
from r3mem.train.schedules import curriculum, lr_factor
from r3mem.train.validate import plot_curves, validate
from r3mem.weights import load_trainable_state, trainable_state


def _optimizer(net, cfg: TrainConfig) -> torch.optim.AdamW:
    memory = [p for n, p in net.named_parameters() if p.requires_grad and "lora_" not in n]
    lora = [p for n, p in net.named_parameters() if "lora_" in n]
    return torch.optim.AdamW([{"params": lora, "lr": cfg.lr}, {"params": memory, "lr": cfg.lr_memory}],
                             weight_decay=cfg.weight_decay)


def save_state(path: Path, net, optimizer, step: int, info: dict) -> None:
    """Write weights, optimizer moments and the step into `path`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-state-", dir=path.parent))
    try:
        save_file(trainable_state(net), str(tmp / "weights.safetensors"))
        opt = optimizer.state_dict()
        tensors = {f"{idx}.{key}": val.detach().cpu().contiguous() if torch.is_tensor(val)
                   else torch.tensor(val) for idx, st in opt["state"].items() for key, val in st.items()}
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
                  for g in opt["param_groups"]]
        (tmp / "trainer.json").write_text(json.dumps({"step": step, "param_groups": groups, **info}, indent=2))
        old = path.with_name(path.name + ".old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_state(path: Path, net, optimizer, log=print) -> dict:
    """Restore weights, step and (when present) the AdamW moments.

    The moments are three times the adapters' size, so a run carried between machines
    in git may leave them out; resuming then restarts them and says so (not exact).
    """
    load_trainable_state(net, load_file(str(path / "weights.safetensors")))
    meta = json.loads((path / "trainer.json").read_text())
    if not (path / "optimizer.safetensors").is_file():
        log(f"warning: {path / 'optimizer.safetensors'} missing: optimizer moments restart from zero")
        return {**meta, "moments_restored": False}
    flat = load_file(str(path / "optimizer.safetensors"))
    state: dict[int, dict] = {}
    for key, val in flat.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return {**meta, "moments_restored": True}


def drop_rows_after(log_path: Path, step: int) -> None:
    """Forget log rows past the saved state: a resumed run redoes those steps, and the
    model card counts tokens and time from the log, so each step must appear once."""
    if not log_path.is_file():
        return
    lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= step]
    if len(kept) != len(lines):
        tmp = log_path.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept))
        os.replace(tmp, log_path)


def train(cfg: TrainConfig, r3: R3Mem, log=print, stop_after_s: float | None = None) -> dict:
    """Train (or resume) until `cfg.steps`; returns the last validation record.

    `stop_after_s` ends the run early, with its state saved, at the first step boundary past
    that many seconds of training: a session or a lent GPU call of fixed length then stops
    cleanly instead of being killed, and losing the steps since the last save.
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    precision, why = usable_precision(cfg.mixed_precision, r3.device.type)
    if why:
        log(f"warning: {why}")
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=precision)
    net = r3.network.train()
    net.activation_checkpointing = cfg.activation_checkpointing
    optimizer = _optimizer(net, cfg)
    start, elapsed, warm_from, changes = 0, 0.0, 0, {}
    if (out / "state" / "trainer.json").is_file():
        meta = load_state(out / "state", net, optimizer, log)
        start, elapsed = meta["step"], meta.get("elapsed_s", 0.0)
        # Kept in the state, so that a run stopped again during that warmup resumes it exactly.
        warm_from = meta.get("warm_from", 0) if meta["moments_restored"] else start
        drop_rows_after(out / "log.jsonl", start)
        log(f"resumed from step {start}")
        changes = cfg.changes_since(meta.get("config", {}))
        if changes:
            log("config changed since the saved state: "
                + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()))
    train_texts, val_texts = load_texts(Path(cfg.data_dir), cfg.val_books)
    corpus = TokenCorpus.build(train_texts, r3.tokenize)
    val_corpus = TokenCorpus.build(val_texts, r3.tokenize)
    pairs = HierarchyPairs.build(train_texts) if cfg.w_hier > 0 else None
    weights = {name: getattr(cfg, f"w_{name}") for name in LOSSES}
    objective, optimizer = accelerator.prepare(Objective(net, weights, cfg.window_segments), optimizer)
    logfile = (out / "log.jsonl").open("a")
    # Each (re)start records the machine and the data, so the model card can say where
    # every stretch of the run was trained and on how many tokens.
    start_row = {"event": "start", "step": start, "train_texts": len(train_texts), "train_tokens": len(corpus.ids),
                 "val_texts": len(val_texts), "val_tokens": len(val_corpus.ids),
                 "processes": accelerator.num_processes, "mixed_precision": precision, **run_info()}
    logfile.write(json.dumps(start_row) + "\n")
    if changes:
        logfile.write(json.dumps({"event": "config-change", "step": start, "changes": changes}) + "\n")
    logfile.flush()
    record: dict = {}
    began = time.monotonic()
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        rate = lr_factor(cfg, step, warm_from)
        for group, base in zip(optimizer.param_groups, (cfg.lr, cfg.lr_memory), strict=True):
            group["lr"] = base * rate
        n_len, n_ratio = curriculum(cfg, step)
        stats: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            rng = step_rng(cfg.seed, step, micro)
            seg_len = int(rng.choice(cfg.segment_lens[:n_len]))
            m = max(1, seg_len // int(rng.choice(cfg.ratios[:n_ratio])))
            ids = corpus.windows(rng, cfg.batch_size, cfg.window_segments * seg_len)
            windows = torch.as_tensor(ids, dtype=torch.long, device=accelerator.device)
            hier = None
            if pairs is not None:
                hier = [tuple(r3.tokenize(x)[:seg_len] for x in triple)
                        for triple in pairs.sample(rng, cfg.hier_batch_size)]
            own_prefix = None
            if cfg.rec_own_prefix > 0:  # drawn from the step's RNG, so resume stays exact
                draw = rng.random((cfg.batch_size, cfg.window_segments, seg_len - 1)) < cfg.rec_own_prefix
                own_prefix = torch.as_tensor(draw, device=accelerator.device)
            with accelerator.accumulate(objective):
                losses = objective(windows, m, hier, m, own_prefix)
                accelerator.backward(losses["total"])
                optimizer.step()
                optimizer.zero_grad()
            for key, val in losses.items():
                stats[key] = stats.get(key, 0.0) + float(val.detach()) / cfg.grad_accum
        elapsed += time.perf_counter() - t0
        row = {"step": step + 1, "seg_len": seg_len, "m": m, "lr": round(cfg.lr * rate, 9),
               "elapsed_s": round(elapsed, 1), "step_s": round(time.perf_counter() - t0, 2),
               "peak_rss_gb": round(peak_rss_gb(), 2),
               **{k: round(v, 4) for k, v in stats.items()}}
        logfile.write(json.dumps(row) + "\n")
        logfile.flush()
        log(json.dumps(row))
        done = step + 1
        stopping = stop_after_s is not None and time.monotonic() - began >= stop_after_s and done < cfg.steps
        if done % cfg.save_every == 0 or done == cfg.steps or stopping:
            save_state(out / "state", net, optimizer, done,
                       {"elapsed_s": elapsed, "warm_from": warm_from, "config": cfg.to_json()})
        if done % cfg.eval_every == 0 or done == cfg.steps:
            net.eval()
            record = {"step": done, "val": True, "elapsed_s": round(elapsed, 1),
                      **validate(net, val_corpus, cfg)}
            net.train()
            logfile.write(json.dumps(record) + "\n")
            logfile.flush()
            log(json.dumps(record))
            r3.save_checkpoint(out / "checkpoint", info={"step": done, "train_seconds": round(elapsed),
                                                         "val": record})
            plot_curves(out / "log.jsonl", out / "loss_curve.png")
        if stopping:
            log(f"stopped at step {done} after {time.monotonic() - began:.0f} s, state saved; rerun to resume")
            break
    logfile.close()
    if not math.isfinite(record.get("rec_nll_r4", 0.0)):
        log("warning: validation loss is not finite")
    return record
