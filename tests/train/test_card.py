"""The model card pipeline end to end on the tiny model: train, ship fp16, evaluate, write."""

import json

import pytest
from safetensors.torch import load_file
from tests.conftest import CORPUS, TINY_MEMORY, tiny_base

from r3mem.api import R3Mem
from r3mem.cli import main as cli_main
from r3mem.train import card
from r3mem.train.config import TrainConfig
from r3mem.train.loop import train

# slow: each test trains tiny runs, ships and evaluates them
pytestmark = pytest.mark.slow


@pytest.fixture
def shipped(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr("r3mem.train.validate.VAL_SEG_LEN", 16)
    books = tmp_path / "data" / "books"
    books.mkdir(parents=True)
    for name in ("a.txt", "val.txt"):
        (books / name).write_text(CORPUS)
    run, out = tmp_path / "runs" / "main", tmp_path / "ckpt"
    cfg = dict(out_dir=str(run), data_dir=str(tmp_path / "data"), val_books=("val.txt",), steps=2, batch_size=2,
               segment_lens=(8,), ratios=(2,), eval_every=2, save_every=1, val_windows=2, w_cyc=0.1)
    # stopped after one step and resumed with a longer schedule: the card lists the change
    for steps in (1, 2):
        train(TrainConfig(**(cfg | {"steps": steps})), R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY),
              log=lambda _: None)
    # ablations: a short run with every loss and one with a loss off, found beside the main run by name
    for name, change in (("full", {}), ("no-cyc", {"w_cyc": 0.0})):
        train(TrainConfig(**(cfg | {"out_dir": str(run.parent / f"ablation-{name}")} | change)),
              R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY), log=lambda _: None)
    assert card.main(["ship", str(run), str(out), "--model", str(tiny_model_dir)]) == 0
    common = ["--model", str(tiny_model_dir), "--checkpoint", str(out), "--data", str(books / "val.txt")]
    assert cli_main(["eval", "reconstruct", *common, "--limit", "2", "--ratios", "2,4,8", "--methods", "r3mem",
                     "--beams", "2", "--json", str(out / "eval" / "reconstruct.json")]) == 0
    assert cli_main(["eval", "reconstruct", *common, "--limit", "2", "--ratios", "4,8", "--methods", "r3mem",
                     "--beams", "2", "--samples", "2", "--json", str(out / "eval" / "reconstruct-cycle.json")]) == 0
    # the floors' ratio on a wider sample than the table's
    assert cli_main(["eval", "reconstruct", *common, "--limit", "4", "--ratios", "4", "--methods", "r3mem",
                     "--beams", "2", "--json", str(out / "eval" / "reconstruct-floors.json")]) == 0
    assert cli_main(["eval", "perplexity", *common, "--limit", "2", "--history", "32,64", "--stride", "16",
                     "--window", "24", "--memory-tokens", "8", "--full-window", "48",
                     "--json", str(out / "eval" / "perplexity.json")]) == 0
    return run, out


def test_ship_writes_fp16_weights_that_load(shipped, tiny_model_dir):
    run, out = shipped
    assert all(t.dtype.itemsize == 2 for t in load_file(str(out / "weights.safetensors")).values())
    r3 = R3Mem.load(model=str(tiny_model_dir), checkpoint=out, device="cpu")
    assert r3.trained
    info = json.loads((out / "config.json").read_text())["info"]
    assert info["step"] == 2 and info["source_run"] == str(run)


def test_card_reports_every_figure_with_its_command(shipped, tmp_path):
    run, out = shipped
    notes = tmp_path / "notes.md"
    notes.write_text("## Notes\n\nHand-written reading of the figures.\n")
    assert card.main(["write", str(run), str(out), "--notes", str(notes)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["reconstruction"]) == {"2", "4", "8"}
    assert metrics["training"]["steps"] == 2 and metrics["training"]["train_tokens"] > 0
    assert metrics["training"]["machines"], "the card names the machine it trained on"
    assert metrics["floors"]["token_accuracy@4"]["met"] is False  # two steps of a tiny model
    # ratio 4 is judged on the wider sample, ratio 8 (not in it) on the table's segments
    at4, at8 = metrics["floors"]["token_accuracy@4"], metrics["floors"]["token_accuracy@8"]
    assert at4["segments"] == 4 and at8["segments"] == metrics["reconstruction"]["8"]["n"] == 2
    assert at8["measured"] == metrics["reconstruction"]["8"]["token_accuracy"]
    assert (at4["evaluation"], at8["evaluation"]) == ("reconstruct-floors", "reconstruct")
    lo, hi = at4["interval_95"]
    assert lo <= at4["measured"] <= hi and at4["clear_of_noise"] is False
    gain = metrics["perplexity"]["64"]
    assert gain["targets"] == 2 and len(gain["ci95"]) == 2 and "window" in gain
    assert set(metrics["ablations"]) == {"full", "no-cyc"}
    assert [row["step"] for row in metrics["ablations"]["no-cyc"]] == [2]
    first = metrics["ablations"]["full"][0]
    assert first["rec_acc_r4"] is not None and isinstance(first["elapsed_s"], int)
    text = (out / "MODEL_CARD.md").read_text()
    assert "r3mem eval reconstruct" in text and "r3mem eval perplexity" in text
    assert "**no**" in text and "Hand-written reading" in text
    assert "regenerated by 2-beam search" in text and metrics["evaluations"]["reconstruct"]["beams"] == 2
    assert "beams" not in metrics["evaluations"]["perplexity"]
    # cycle-consistent selection: its own rows and floor checks beside the default decoding's
    assert set(metrics["reconstruction_cycle"]) == {"4", "8"}
    assert metrics["evaluations"]["reconstruct-cycle"]["cycle_samples"] == 2
    assert metrics["evaluations"]["reconstruct-cycle"]["wall_s"] > 0
    assert metrics["floors"]["token_accuracy@8 (cycle-consistent)"]["measured"] == \
        metrics["reconstruction_cycle"]["8"]["token_accuracy"]
    assert "### Cycle-consistent selection" in text and "4 (cycle-consistent)" in text
    assert "among the 2 beams, pool-guided (4), and 2 samples" in text
    shown = metrics["samples"]
    assert [x["ratio"] for x in shown] == [2, 4, 8] and {x["segment"] for x in shown} == {0}
    assert "### What comes back" in text and all(x["reconstruction"] in text for x in shown)
    assert text.count(shown[0]["source"]) >= 3  # once per ratio
    assert (out / "loss_curve.png").is_file()
    assert [(r["event"], r["step"]) for r in metrics["training"]["lineage"]] == [("config-change", 1)]
    assert "step 1: config changed: steps 1 → 2" in text
    assert "free-running acc @4" in text
    assert metrics["stale_evaluations"] == [] and "not on this one" not in text
    assert "--limit 4 --ratios 4" in text.split("## Reconstruction from memory")[0]  # the floors name their source


def test_an_evaluation_of_other_weights_is_marked_and_never_meets_a_floor(shipped, tmp_path):
    """Re-shipping new weights leaves the old evaluations in eval/: the card must not credit them."""
    run, out = shipped
    path = out / "eval" / "reconstruct-cycle.json"
    result = json.loads(path.read_text())
    result["checkpoint"] = "0123456789abcdef"
    for row in result["rows"]:
        row["token_accuracy"] = 1.0  # would meet every floor if it counted
    path.write_text(json.dumps(result))
    assert card.main(["write", str(run), str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stale_evaluations"] == ["reconstruct-cycle"]
    assert metrics["reconstruction_cycle"]["4"]["token_accuracy"] == 1.0  # still shown
    assert "token_accuracy@4 (cycle-consistent)" not in metrics["floors"]
    assert metrics["evaluations"]["reconstruct"]["checkpoint"] == metrics["checkpoint"]
    text = (out / "MODEL_CARD.md").read_text()
    assert text.count("not on this one") == 1 and "Measured on checkpoint `0123456789abcdef`" in text
    assert "4 (cycle-consistent)" in text and "4 (default)" not in text  # not set beside other weights' rows


def test_a_stale_wider_sample_does_not_judge_the_floors(shipped):
    run, out = shipped
    path = out / "eval" / "reconstruct-floors.json"
    result = json.loads(path.read_text())
    result["checkpoint"] = "0123456789abcdef"
    result["rows"][0]["token_accuracy"], result["rows"][0]["token_accuracy_se"] = 1.0, 0.0
    path.write_text(json.dumps(result))
    assert card.main(["write", str(run), str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "reconstruct-floors" in metrics["stale_evaluations"]
    at4 = metrics["floors"]["token_accuracy@4"]
    assert at4["segments"] == 2 and at4["measured"] == metrics["reconstruction"]["4"]["token_accuracy"]
    assert at4["evaluation"] == "reconstruct"
    floors_part = (out / "MODEL_CARD.md").read_text().split("## Reconstruction from memory")[0]
    assert "--limit 4 --ratios 4" not in floors_part


def test_card_on_a_missing_run_is_one_line_error(tmp_path, capsys):
    assert card.main(["write", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_a_command_run_under_an_older_default_beam_width_spells_that_width_out():
    old = card.DEFAULT_BEAMS // 2
    ran = "r3mem eval reconstruct --limit 32 --samples 8"
    assert card.reproducible_command({"command": ran, "beams": old}) == f"{ran} --beams {old}"
    assert card.reproducible_command({"command": ran, "beams": card.DEFAULT_BEAMS}) == ran
    assert card.reproducible_command({"command": f"{ran} --beams 2", "beams": 2}) == f"{ran} --beams 2"
    assert card.reproducible_command({"command": f"{ran} --beams=2", "beams": 2}) == f"{ran} --beams=2"
    perplexity = "r3mem eval perplexity --limit 8"
    assert card.reproducible_command({"command": perplexity}) == perplexity
    assert card.reproducible_command({}) is None
