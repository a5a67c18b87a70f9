"""What changes with the step: the curriculum's reach and the learning rate.

Both are pure functions of the config and the step, so a resumed run picks up exactly
where it stopped and a test can check either without training anything.
"""

from __future__ import annotations

from r3mem.train.config import TrainConfig


def curriculum(cfg: TrainConfig, step: int) -> tuple[int, int]:
    """The number of segment lengths and of ratios allowed at `step` (prefixes of the lists)."""
    progress = min(1.0, step / max(1, cfg.curriculum_steps))
    n_len = 1 + round(progress * (len(cfg.segment_lens) - 1))
    n_ratio = 1 + round(progress * (len(cfg.ratios) - 1))
    return n_len, n_ratio


def lr_factor(cfg: TrainConfig, step: int, warm_from: int = 0) -> float:
    """The fraction of the configured rates to use at (0-based) `step`.

    A linear warmup of `warmup_steps` from `warm_from`: 0 for a new run, the resume step
    when the optimizer moments were lost, since AdamW's first steps on fresh moments move
    every weight by the full rate. Then, if `lr_decay_steps` > 0, a linear anneal from
    `lr_decay_start` down to `lr_final_fraction`, held there after: at a constant rate the
    validation curve flattens at the gradient-noise level, and lowering the rate is what
    takes it below that.
    """
    warm = min(1.0, (step + 1 - warm_from) / max(1, cfg.warmup_steps))
    if cfg.lr_decay_steps == 0:
        return warm
    progress = min(1.0, max(0.0, (step - cfg.lr_decay_start) / cfg.lr_decay_steps))
    return warm * (1.0 - (1.0 - cfg.lr_final_fraction) * progress)
