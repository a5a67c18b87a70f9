"""Distillation of the context reader: configs parse, the loss reaches the reader and nothing else."""

from pathlib import Path

import pytest
from tests.conftest import CORPUS

from r3mem.context_memory import ContextConfig, ContextReader
from r3mem.errors import InvalidInput
from r3mem.train.context_distill import DistillConfig, distill_loss

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "context").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_distill_configs_parse(path):
    cfg = DistillConfig.from_toml(path)
    assert cfg.out_dir.startswith("runs/") and 0 <= cfg.verbatim < cfg.budget


def test_bad_fields_are_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("budgett = 3\n")
    with pytest.raises(InvalidInput, match="budgett"):
        DistillConfig.from_toml(bad)
    with pytest.raises(InvalidInput, match="max_segments"):
        DistillConfig(min_segments=3, max_segments=2)


def test_loss_trains_the_reader_only(tiny):
    cfg = DistillConfig(budget=8, tail=8, target=8, verbatim=0)
    reader = ContextReader(tiny.network.hidden_size, ContextConfig())
    ids = tiny.tokenize(CORPUS)[: 3 * tiny.config.segment_len + 16]
    loss, kl_window = distill_loss(tiny, reader, cfg, ids, 3)
    loss.backward()
    assert float(loss) >= 0 and kl_window >= 0
    assert reader.residual.weight.grad is not None and reader.residual.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.network.parameters()), "the memory network stays as shipped"


def test_sparse_kl_is_the_exact_kl_when_the_teacher_is_kept_whole():
    import torch
    import torch.nn.functional as F

    from r3mem.train.distill_cache import sparse_kl

    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(5, 11, generator=gen).log_softmax(-1)
    student = torch.randn(5, 11, generator=gen).log_softmax(-1)
    exact = F.kl_div(student, teacher, log_target=True, reduction="none").sum(-1)
    top_logp, top_idx = teacher.topk(11, dim=-1)
    assert torch.allclose(sparse_kl(student, top_idx, top_logp), exact, atol=1e-5)
    top_logp, top_idx = teacher.topk(3, dim=-1)  # truncated: still a divergence, zero for the teacher itself
    assert (sparse_kl(student, top_idx, top_logp) >= -1e-6).all()
    assert torch.allclose(sparse_kl(teacher, top_idx, top_logp), torch.zeros(5), atol=1e-5)


def test_cached_training_resumes_and_reads_only_built_draws(tiny, tmp_path):
    """Built draws are reused by the trainer; building twice adds nothing; the reader learns."""
    from r3mem.train import distill_cache
    from r3mem.train.context_distill import build_cache, train

    data = tmp_path / "data"
    (data / "books").mkdir(parents=True)
    (data / "books" / "a.txt").write_text(CORPUS * 20)
    cfg = DistillConfig(out_dir=str(tmp_path / "run"), data_dir=str(data), budget=16, verbatim=8, tail=8,
                        target=8, min_segments=2, max_segments=3, cache_draws=3, top_k=4, batch=2, steps=2,
                        bf16=False, warmup_steps=1)
    build_cache(cfg, tiny, log=lambda *_: None)
    cache = tmp_path / "run" / "cache"
    assert distill_cache.built_draws(cache) == [0, 1, 2]
    before = {p: p.stat().st_mtime_ns for p in cache.glob("draw-*")}
    build_cache(cfg, tiny, log=lambda *_: None)
    assert {p: p.stat().st_mtime_ns for p in cache.glob("draw-*")} == before, "built draws are not rebuilt"
    train(cfg, tiny, log=lambda *_: None)
    rows = [line for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if line]
    assert len(rows) == 2
    reader = ContextReader.load(tmp_path / "run" / "reader", tiny.network.hidden_size)
    assert reader is not None and reader.config.verbatim == 8
    assert reader.residual.weight.abs().sum() > 0, "the reader moved from its zero init"
    with pytest.raises(ValueError, match="built with"):
        build_cache(DistillConfig(**{**cfg.__dict__, "top_k": 5}), tiny, log=lambda *_: None)


def test_mlp_reader_starts_as_the_nearest_token_and_round_trips(tmp_path):
    """The wider reader begins exactly where the linear one does, and saves and loads with its shape."""
    import torch

    dim, table = 16, torch.randn(40, 16)
    vectors, levels = torch.randn(6, dim), torch.tensor([0, 0, 1, 1, 3, 3])
    plain = ContextReader(dim, ContextConfig())
    wide = ContextReader(dim, ContextConfig(mlp=8))
    assert torch.allclose(wide(vectors, levels, table), plain(vectors, levels, table))
    with torch.no_grad():
        wide.mlp[2].bias.fill_(0.5)
        wide.gate.weight.fill_(0.25)
    wide.save(tmp_path)
    back = ContextReader.load(tmp_path, dim)
    assert back is not None and back.config.mlp == 8
    assert torch.allclose(back(vectors, levels, table), wide(vectors, levels, table), atol=1e-2)  # fp16 on disk
    with pytest.raises(InvalidInput, match="mlp"):
        ContextConfig(mlp=-1)
