"""Training the context reader by distillation from the base LM reading the raw history.

The student is the frozen base LM reading [context memory of S segments ; raw tail ; target];
the teacher is the same LM reading [the S segments raw ; tail ; target]. The loss is the KL
divergence of the student's next-token distribution from the teacher's at every tail and
target position: far denser than the target tokens' likelihood alone, and it asks the memory
for exactly what the raw history would have told the LM. Only `ContextReader` learns; the
compress adapter that writes the snapshots stays as shipped, so reconstruction is untouched.

Resume is exact: the state directory (ignored by git, see docs/training.md) holds the reader,
its AdamW moments and the step, and every draw comes from an RNG seeded by (seed, step).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from r3mem.api import R3Mem
from r3mem.base_model import embedding_table
from r3mem.context_lm import base_hidden, memory_prefix
from r3mem.context_memory import ContextConfig, ContextReader
from r3mem.errors import InvalidInput
from r3mem.retention_data import held_out_split
from r3mem.train import distill_cache


@dataclass(frozen=True)
class DistillConfig:
    """What the context reader trains on and for how long."""

    out_dir: str = "runs/context-distill"
    data_dir: str = "../shared/data"
    checkpoint: str = ""  # the memory network whose snapshots are read; "" = the shipped one
    seed: int = 0
    steps: int = 3000
    # A linear map at identity: small steps keep it near the embedding space it starts in.
    lr: float = 5e-4
    warmup_steps: int = 20
    budget: int = 64  # k: memory positions, as the benchmark's --memory-tokens
    verbatim: int = 0  # newest history tokens kept verbatim inside the budget (ContextConfig.verbatim)
    mlp: int = 0  # ContextConfig.mlp: a residual MLP of this width and a nearest-token gate (0: linear only)
    # Raw tokens the student reads after the memory. Shorter than the benchmark's W - k so the
    # memory's share of the signal is larger and a step is cheaper; the LM reads any length.
    tail: int = 192
    target: int = 128
    # Segments of history per draw, uniform in [min, max]: the teacher reads them raw, so
    # max * 128 + tail + target must fit its 8,192-token window (and this CPU's patience).
    min_segments: int = 1
    max_segments: int = 10
    bf16: bool = True  # autocast: about 1.6x faster on this AVX-512 CPU, the loss stays fp32
    save_every: int = 10
    # Cached draws (r3mem.train.distill_cache): with cache_draws > 0 the teacher and the
    # compressor run once per draw (`--build-cache`) and a step only runs the student on `batch`
    # draws picked from those built, so the reader sees many more steps for the same CPU.
    cache_draws: int = 0
    cache_dir: str = ""  # "" = <out_dir>/cache
    top_k: int = 64  # teacher log-probs kept per position; the rest of its mass is one bucket
    batch: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "budget", "tail", "target", "min_segments", "save_every", "top_k", "batch"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"distill config: {name} must be >= 1, got {getattr(self, name)}")
        if self.max_segments < self.min_segments:
            raise InvalidInput("distill config: max_segments must be >= min_segments")
        if not self.lr > 0:
            raise InvalidInput("distill config: lr must be > 0")

    @classmethod
    def from_toml(cls, path: str | Path) -> DistillConfig:
        data = tomllib.loads(Path(path).read_text())
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInput(f"distill config {path}: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


def _save(path: Path, reader: ContextReader, optimizer: torch.optim.Optimizer, step: int, info: dict) -> None:
    """Reader, AdamW moments and step into `path`, atomically (rename of a finished directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-state-", dir=path.parent))
    try:
        save_file({k: v.contiguous() for k, v in reader.state_dict().items()}, str(tmp / "reader.safetensors"))
        opt = optimizer.state_dict()
        moments = {f"{i}.{k}": v.contiguous() if torch.is_tensor(v) else torch.tensor(v)
                   for i, st in opt["state"].items() for k, v in st.items()}
        save_file(moments, str(tmp / "optimizer.safetensors"))
        (tmp / "trainer.json").write_text(json.dumps({"step": step, **info}, indent=2))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(path: Path, reader: ContextReader, optimizer: torch.optim.Optimizer) -> dict:
    reader.load_state_dict(load_file(str(path / "reader.safetensors")))
    state: dict[int, dict] = {}
    for key, val in load_file(str(path / "optimizer.safetensors")).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = val
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return json.loads((path / "trainer.json").read_text())


def distill_loss(r3: R3Mem, reader: ContextReader, cfg: DistillConfig, ids: list[int],
                 n_seg: int) -> tuple[torch.Tensor, float]:
    """KL(teacher || student) per target position, and the same KL for the raw window.

    The window baseline reads the last `budget` raw tokens of the history in the memory's place,
    as `r3mem eval perplexity` does: memory KL below window KL is retention won, on this draw.
    Only target positions are scored, as in the benchmark: right after the memory the missing
    local context dominates, and no summary can stand in for the last few words.
    """
    net, seg_len, device = r3.network, r3.config.segment_len, r3.device
    history, rest = ids[: n_seg * seg_len], ids[n_seg * seg_len :]  # rest = tail + target
    lm_head = net.causal_lm.lm_head
    with torch.no_grad():
        full = base_hidden(net, None, torch.tensor([ids], device=device))  # (1, H+R, d)
        teacher = lm_head(full[0, -cfg.target : -1]).float().log_softmax(-1)  # (target-1, V)
        window = base_hidden(net, None, torch.tensor([history[-cfg.budget :] + rest[:-1]], device=device))
        baseline = lm_head(window[0, -cfg.target + 1 :]).float().log_softmax(-1)
        kl_window = F.kl_div(baseline, teacher, log_target=True, reduction="batchmean").item()
    prefix = memory_prefix(net, reader, history, cfg.budget)  # (1, k', d)
    hidden = base_hidden(net, prefix, torch.tensor([rest[:-1]], device=device))  # (1, k'+R-1, d)
    student = lm_head(hidden[0, -cfg.target + 1 :]).float().log_softmax(-1)  # (target-1, V)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean"), kl_window


def cache_path(cfg: DistillConfig) -> Path:
    return Path(cfg.cache_dir or Path(cfg.out_dir) / "cache")


def cache_settings(cfg: DistillConfig, r3: R3Mem) -> dict:
    return {"seed": cfg.seed, "budget": cfg.budget, "verbatim": cfg.verbatim, "tail": cfg.tail,
            "target": cfg.target, "min_segments": cfg.min_segments, "max_segments": cfg.max_segments,
            "top_k": cfg.top_k, "checkpoint": r3.checkpoint_fingerprint}


def build_cache(cfg: DistillConfig, r3: R3Mem, log=print, stop_after_s: float | None = None) -> None:
    """Build draws 0 .. cache_draws - 1 that are not built yet (resumable, see distill_cache)."""
    cache = cache_path(cfg)
    distill_cache.write_manifest(cache, cache_settings(cfg, r3))
    texts, _ = held_out_split(Path(cfg.data_dir), r3.tokenize)
    done = set(distill_cache.built_draws(cache))
    began = time.monotonic()
    slots = r3.context_reader.config.slots
    for index in range(cfg.cache_draws):
        if index in done:
            continue
        ids, n_seg = distill_cache.draw_window(cfg.seed, index, texts, r3.config.segment_len, cfg.min_segments,
                                               cfg.max_segments, cfg.tail + cfg.target)
        with torch.autocast(r3.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            draw = distill_cache.build_draw(r3, ids, n_seg, budget=cfg.budget, verbatim=cfg.verbatim, slots=slots,
                                            target=cfg.target, top_k=cfg.top_k)
        distill_cache.save_draw(cache, index, draw)
        if index % 10 == 0:
            log(f"draw {index}: {n_seg} segments, kl_window {draw['kl_window'].item():.4f}")
        if stop_after_s is not None and time.monotonic() - began >= stop_after_s:
            log(f"stopped after draw {index}; rerun to resume")
            return


def cached_loss(r3: R3Mem, reader: ContextReader, cfg: DistillConfig, draws: list[dict]) -> tuple[torch.Tensor, float]:
    """Mean sparse KL of the student over a batch of cached draws, and the window's on the same."""
    net = r3.network
    table = embedding_table(net.causal_lm).detach()
    prefixes = []
    for d in draws:
        vectors = reader(d["vectors"].float(), d["levels"].long(), table)  # (n, d)
        prefixes.append(torch.cat([vectors, net.embed(d["recent"].long()).float()]))
    if len({p.shape[0] for p in prefixes}) != 1:
        raise InvalidInput("cached draws of one batch must have equal memory lengths: raise min_segments")
    prefix = torch.stack(prefixes)  # (B, k, d)
    rest = torch.stack([d["rest"].long()[:-1] for d in draws])  # (B, R-1)
    hidden = base_hidden(net, prefix, rest)  # (B, k+R-1, d)
    student = net.causal_lm.lm_head(hidden[:, -cfg.target + 1 :]).float().log_softmax(-1)  # (B, T-1, V)
    top_idx = torch.stack([d["top_idx"].long() for d in draws])
    top_logp = torch.stack([d["top_logp"].float() for d in draws])
    loss = distill_cache.sparse_kl(student, top_idx, top_logp).mean()
    return loss, float(np.mean([d["kl_window_sparse"].item() for d in draws]))


def train(cfg: DistillConfig, r3: R3Mem, log=print, stop_after_s: float | None = None) -> None:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = [] if cfg.cache_draws else held_out_split(Path(cfg.data_dir), r3.tokenize)[0]
    reader = ContextReader(r3.network.hidden_size, ContextConfig(verbatim=cfg.verbatim, mlp=cfg.mlp)).to(r3.device)
    optimizer = torch.optim.AdamW(reader.parameters(), lr=cfg.lr, weight_decay=0.0)
    start = 0
    if (out / "state" / "trainer.json").is_file():
        start = _load(out / "state", reader, optimizer)["step"]
        log(f"resumed from step {start}")
    lengths = np.array([len(t) for t in texts], dtype=np.float64)
    cache = cache_path(cfg)
    if cfg.cache_draws:
        distill_cache.write_manifest(cache, cache_settings(cfg, r3))
    logfile = (out / "log.jsonl").open("a")
    began = time.monotonic()
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, step])
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        if cfg.cache_draws:
            built = distill_cache.built_draws(cache)
            if not built:
                raise InvalidInput(f"no cached draws in {cache}: run with --build-cache first")
            picked = [built[int(i)] for i in rng.choice(len(built), size=min(cfg.batch, len(built)), replace=False)]
            draws = [distill_cache.load_draw(cache, i) for i in picked]
            n_seg = int(np.mean([d["segments"].item() for d in draws]))
            with torch.autocast(r3.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, kl_window = cached_loss(r3, reader, cfg, draws)
        else:
            n_seg = int(rng.integers(cfg.min_segments, cfg.max_segments + 1))
            width = n_seg * r3.config.segment_len + cfg.tail + cfg.target
            usable = np.where(lengths > width, lengths, 0)
            text = texts[int(rng.choice(len(texts), p=usable / usable.sum()))]
            begin = int(rng.integers(0, len(text) - width))
            with torch.autocast(r3.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, kl_window = distill_loss(r3, reader, cfg, list(text[begin : begin + width]), n_seg)
        if loss.requires_grad:  # a history shorter than one segment past the verbatim level trains nothing
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        row = {"step": step + 1, "segments": n_seg, "kl": round(loss.item(), 5), "kl_window": round(kl_window, 5),
               "step_s": round(time.perf_counter() - t0, 2)}
        logfile.write(json.dumps(row) + "\n")
        logfile.flush()
        done = step + 1
        stopping = stop_after_s is not None and time.monotonic() - began >= stop_after_s
        if done % cfg.save_every == 0 or done == cfg.steps or stopping:
            _save(out / "state", reader, optimizer, done, {"config": asdict(cfg)})
            reader.save(out / "reader")
        if done % 10 == 0:
            log(json.dumps(row))
        if stopping:
            log(f"stopped at step {done}, state saved; rerun to resume")
            break
    logfile.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m r3mem.train.context_distill", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--stop-after", type=float, default=None, help="seconds, then save and stop")
    parser.add_argument("--build-cache", action="store_true",
                        help="build the config's cached draws (teacher + snapshots) instead of training")
    args = parser.parse_args(argv)
    cfg = DistillConfig.from_toml(args.config)
    r3 = R3Mem.load(checkpoint=cfg.checkpoint or None)
    if args.build_cache:
        build_cache(cfg, r3, stop_after_s=args.stop_after)
    else:
        train(cfg, r3, stop_after_s=args.stop_after)


if __name__ == "__main__":
    main()
