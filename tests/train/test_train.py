"""The trainer on the tiny model: it learns, and a stopped run resumes exactly."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY_MEMORY, tiny_base

from r3mem.api import R3Mem
from r3mem.errors import InvalidInput
from r3mem.train.config import TrainConfig
from r3mem.train.loop import train
from r3mem.train.schedules import curriculum, lr_factor
from r3mem.weights import trainable_state


@pytest.fixture
def data(train_data):
    return train_data


def _config(tmp_path, data, **kw) -> TrainConfig:
    base = dict(out_dir=str(tmp_path / "run"), data_dir=str(data), val_books=("val.txt",), steps=4,
                batch_size=2, segment_lens=(8, 16), ratios=(4, 2), curriculum_steps=2, eval_every=2,
                save_every=1, val_windows=2, hier_batch_size=2, w_cyc=0.1)
    base.update(kw)
    return TrainConfig(**base)


def _fresh() -> R3Mem:
    return R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY)


def test_resume_is_exact(tmp_path, data, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    straight = _fresh()
    train(_config(tmp_path, data, out_dir=str(tmp_path / "straight")), straight, log=lambda _: None)
    resumed = _fresh()
    train(_config(tmp_path, data, out_dir=str(tmp_path / "split"), steps=2), resumed, log=lambda _: None)
    again = _fresh()  # a new process: only the state directory carries over
    train(_config(tmp_path, data, out_dir=str(tmp_path / "split")), again, log=lambda _: None)
    a, b = trainable_state(straight.network), trainable_state(again.network)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"
    rows = [json.loads(x) for x in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if not r.get("val") and "event" not in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(r["peak_rss_gb"] > 0 for r in steps), "each step records the memory the run needed"
    starts = [r for r in rows if r.get("event") == "start"]
    assert [r["step"] for r in starts] == [0, 2], "each (re)start is logged with where it ran"
    assert all(r["train_tokens"] > 0 and r["val_tokens"] > 0 and r["machine"] for r in starts)
    assert (tmp_path / "split" / "loss_curve.png").stat().st_size > 1000
    assert (tmp_path / "split" / "checkpoint" / "config.json").is_file()


@pytest.mark.slow  # trains tiny runs; `make test-unit` keeps test_resume_is_exact for the loop
def test_training_reduces_reconstruction_loss(tmp_path, data, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    r3 = R3Mem.from_base(tiny_base(init_range=0.3), device="cpu", config=TINY_MEMORY)
    cfg = _config(tmp_path, data, steps=60, lr=1e-2, lr_memory=3e-2, segment_lens=(8,), ratios=(2,), eval_every=60,
                  save_every=60, w_hier=0.0, w_cyc=0.0, w_lm=0.0)
    train(cfg, r3, log=lambda _: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    rec = [r["rec"] for r in rows if not r.get("val") and "event" not in r]
    assert sum(rec[-5:]) / 5 < 0.9 * sum(rec[:5]) / 5, rec


@pytest.mark.slow  # trains tiny runs; `make test-unit` keeps test_resume_is_exact for the loop
def test_longer_windows_train_and_resume(tmp_path, data, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    train(_config(tmp_path, data, steps=2, window_segments=3), _fresh(), log=lambda _: None)
    train(_config(tmp_path, data, steps=3, window_segments=3), _fresh(), log=lambda _: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if not r.get("val") and "event" not in r]
    assert [r["step"] for r in steps] == [1, 2, 3] and all(r["lm"] > 0 for r in steps)
    saved = json.loads((tmp_path / "run" / "state" / "trainer.json").read_text())
    assert saved["config"]["window_segments"] == 3


def test_curriculum_ramps_up():
    cfg = TrainConfig(segment_lens=(32, 64, 128), ratios=(4, 8, 2, 16), curriculum_steps=100)
    assert curriculum(cfg, 0) == (1, 1)
    assert curriculum(cfg, 100) == (3, 4) == curriculum(cfg, 10_000)


def test_lr_warms_up_then_anneals_linearly_and_holds():
    cfg = TrainConfig(warmup_steps=10, lr_decay_start=100, lr_decay_steps=50, lr_final_fraction=0.2)
    assert lr_factor(cfg, 0) == pytest.approx(0.1)
    assert lr_factor(cfg, 9) == lr_factor(cfg, 100) == 1.0
    assert lr_factor(cfg, 125) == pytest.approx(0.6)
    assert lr_factor(cfg, 150) == pytest.approx(0.2) == lr_factor(cfg, 10_000)
    # Fresh moments on resume warm up again from the resume step, inside the anneal too.
    assert lr_factor(cfg, 125, warm_from=125) == pytest.approx(0.06)
    assert lr_factor(cfg, 134, warm_from=125) == pytest.approx(0.6 - 0.8 * 9 / 50)
    assert lr_factor(TrainConfig(warmup_steps=0), 0) == 1.0 == lr_factor(TrainConfig(), 10_000)


@pytest.mark.parametrize("field, value", [("lr_decay_steps", -1), ("lr_decay_start", -1), ("warmup_steps", -1),
                                          ("lr_final_fraction", 0.0), ("lr_final_fraction", 1.5)])
def test_config_rejects_bad_lr_schedule(field, value):
    with pytest.raises(InvalidInput, match=field):
        TrainConfig(**{field: value})


def test_config_rejects_bad_fields(tmp_path):
    with pytest.raises(InvalidInput, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(InvalidInput, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    assert dataclasses.replace(TrainConfig(), steps=5).steps == 5


@pytest.mark.parametrize(("files", "match"), [
    ({"c.toml": "steps = 3\nbogus = 1\n"}, "bogus"),
    ({"c.toml": "steps = ["}, "not valid TOML"),
    ({"c.toml": 'base = "b.toml"\n', "b.toml": 'base = "c.toml"\n'}, "base chain loops"),
    ({"c.toml": 'base = "missing.toml"\n'}, "no such train config: .*missing.toml"),
    ({"c.toml": "base = 3\n"}, "base must be a file name"),
])
def test_bad_config_files_are_refused_by_name(tmp_path, files, match):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(InvalidInput, match=match):
        TrainConfig.from_toml(tmp_path / "c.toml")


def test_config_base_is_read_first_and_overridden(tmp_path):
    (tmp_path / "parent.toml").write_text('steps = 7\nlr = 2e-3\nratios = [4, 8]\n[memory]\nr = 4\nalpha = 8\n')
    sub = tmp_path / "variants"
    sub.mkdir()
    child = sub / "child.toml"
    child.write_text('base = "../parent.toml"\nsteps = 9\n[memory]\nr = 16\n')
    cfg = TrainConfig.from_toml(child)
    assert (cfg.steps, cfg.lr, cfg.ratios) == (9, 2e-3, (4, 8))
    assert cfg.memory == {"r": 16, "alpha": 8}
    assert "base" not in cfg.to_json()


@pytest.mark.slow  # trains tiny runs; `make test-unit` keeps test_resume_is_exact for the loop
def test_resume_without_optimizer_moments_continues(tmp_path, data, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    train(_config(tmp_path, data, steps=3, warmup_steps=3), _fresh(), log=lambda _: None)
    (tmp_path / "run" / "state" / "optimizer.safetensors").unlink()
    said: list[str] = []
    train(_config(tmp_path, data, steps=4, warmup_steps=3), _fresh(), log=said.append)
    assert any("moments restart" in line for line in said)
    # Stopped again inside that warmup, this time with its moments saved.
    train(_config(tmp_path, data, steps=5, warmup_steps=3), _fresh(), log=lambda _: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if not r.get("val") and "event" not in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5]
    lr = _config(tmp_path, data).lr
    assert steps[2]["lr"] == lr, "the first run had finished its warmup"
    assert steps[3]["lr"] == pytest.approx(lr / 3), "fresh moments warm up again"
    assert steps[4]["lr"] == pytest.approx(2 * lr / 3), "a second resume continues that warmup where it stood"


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs").glob("*.toml")))
def test_shipped_configs_parse(path):
    cfg = TrainConfig.from_toml(path)
    assert cfg.out_dir.startswith("runs/") and cfg.w_rec > 0


@pytest.mark.slow  # trains tiny runs; `make test-unit` keeps test_resume_is_exact for the loop
def test_resume_redoes_steps_past_the_saved_state_once(tmp_path, data, monkeypatch):
    """A kill after a step that ran but was not saved: the resumed log lists that step once."""
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    train(_config(tmp_path, data, steps=2, eval_every=100), _fresh(), log=lambda _: None)
    log_path = tmp_path / "run" / "log.jsonl"
    with log_path.open("a") as fh:  # step 3 ran, then the process died before saving
        fh.write(json.dumps({"step": 3, "seg_len": 8, "m": 2, "rec": 9.9}) + "\n")
    train(_config(tmp_path, data, steps=4, eval_every=100), _fresh(), log=lambda _: None)
    rows = [json.loads(x) for x in log_path.read_text().splitlines()]
    assert [r["step"] for r in rows if "rec" in r] == [1, 2, 3, 4]
    assert 9.9 not in [r["rec"] for r in rows if "rec" in r]


@pytest.mark.slow  # trains tiny runs; `make test-unit` keeps test_resume_is_exact for the loop
def test_scheduled_sampling_trains_and_resumes_exactly(tmp_path, data, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    kw = dict(rec_own_prefix=0.5, w_hier=0.0, w_cyc=0.0)
    straight = _fresh()
    train(_config(tmp_path, data, out_dir=str(tmp_path / "straight"), steps=2, **kw), straight, log=lambda _: None)
    train(_config(tmp_path, data, out_dir=str(tmp_path / "split"), steps=1, **kw), _fresh(), log=lambda _: None)
    again = _fresh()
    train(_config(tmp_path, data, out_dir=str(tmp_path / "split"), steps=2, **kw), again, log=lambda _: None)
    a, b = trainable_state(straight.network), trainable_state(again.network)
    assert all(torch.equal(a[k], b[k]) for k in a), "the sampled prefixes must come from the step's RNG"


def test_validation_reports_free_running_accuracy_beside_teacher_forced(tmp_path, data, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    train(_config(tmp_path, data, steps=2, w_hier=0.0, w_cyc=0.0), _fresh(), log=lambda _: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    val = [r for r in rows if r.get("val")][-1]
    for ratio in (4, 8):
        # equal lengths: an in-order match never scores below the same token in place
        assert 0 <= val[f"gen_acc_r{ratio}"] <= val[f"gen_aligned_r{ratio}"] <= 1
        assert 0 <= val[f"guided_acc_r{ratio}"] <= 1  # the shipped decoding's guidance, greedy


def test_guided_validation_is_the_pool_guided_greedy_expansion(tmp_path, data, monkeypatch):
    """guided_acc must score a greedy expansion at guidance DEFAULT_GUIDANCE, not the unguided one again."""
    from r3mem.decode.options import DEFAULT_GUIDANCE
    from r3mem.train.data import TokenCorpus
    from r3mem.train.validate import validate

    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    r3 = _fresh()
    corpus = TokenCorpus.build([(data / "books" / "val.txt").read_text()], r3.tokenize)
    guidances = []
    from r3mem.decode.beam import generate

    def recording(net, memory, n_tokens, decoding, *rest, **kw):
        guidances.append(decoding.guidance)
        return generate(net, memory, n_tokens, decoding, *rest, **kw)

    monkeypatch.setattr("r3mem.train.validate.generate", recording)
    val = validate(r3.network, corpus, _config(tmp_path, data))
    assert guidances == [0.0, DEFAULT_GUIDANCE] * 2  # ratio 4, then ratio 8
    assert {"guided_acc_r4", "guided_acc_r8"} <= set(val)


@pytest.mark.slow  # trains tiny runs; `make test-unit` keeps test_resume_is_exact for the loop
def test_resume_logs_what_the_config_changed(tmp_path, data, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    train(_config(tmp_path, data, steps=1, eval_every=100), _fresh(), log=lambda _: None)
    said: list[str] = []
    train(_config(tmp_path, data, steps=2, eval_every=100, lr_decay_steps=5), _fresh(), log=said.append)
    train(_config(tmp_path, data, steps=2, eval_every=100, lr_decay_steps=5), _fresh(), log=said.append)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    changes = [r for r in rows if r.get("event") == "config-change"]
    assert changes == [{"event": "config-change", "step": 1, "changes": {"steps": [1, 2], "lr_decay_steps": [0, 5]}}]
    assert sum("config changed" in line for line in said) == 1, "an unchanged resume says nothing"


def test_a_time_limit_stops_cleanly_with_the_state_saved(tmp_path, data, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    said: list[str] = []
    train(_config(tmp_path, data, save_every=3, eval_every=100), _fresh(), log=said.append, stop_after_s=0)
    saved = json.loads((tmp_path / "run" / "state" / "trainer.json").read_text())
    assert saved["step"] == 1, "stopped after the first step and saved it, though save_every is 3"
    assert any("stopped at step 1" in line for line in said)
    train(_config(tmp_path, data, save_every=3, eval_every=100), _fresh(), log=lambda _: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "rec" in r] == [1, 2, 3, 4]


@pytest.mark.slow  # spawns an `r3mem` process
def test_cli_refuses_a_time_limit_that_is_not_positive(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'out_dir = "{tmp_path / "new"}"\nsteps = 5\n')
    proc = subprocess.run([sys.executable, "-m", "r3mem.cli", "train", "--config", str(cfg), "--max-minutes", "0"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "--max-minutes must be > 0" in proc.stderr
    assert not (tmp_path / "new").exists()
