"""Distillation of the context reader: configs parse, the loss reaches the reader and nothing else."""

from pathlib import Path

import pytest
from tests.conftest import CORPUS

from r3mem.context_memory import ContextConfig, ContextReader
from r3mem.errors import InvalidInput
from r3mem.train.context_distill import DistillConfig, distill_loss

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "context").glob("*.toml"))


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
