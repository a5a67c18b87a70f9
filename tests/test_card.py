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
    train(TrainConfig(**cfg), R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY), log=lambda _: None)
    # ablations: a short run with every loss and one with a loss off, found beside the main run by name
    for name, change in (("full", {}), ("no-cyc", {"w_cyc": 0.0})):
        train(TrainConfig(**(cfg | {"out_dir": str(run.parent / f"ablation-{name}")} | change)),
              R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY), log=lambda _: None)
    assert card.main(["ship", str(run), str(out), "--model", str(tiny_model_dir)]) == 0
    common = ["--model", str(tiny_model_dir), "--checkpoint", str(out), "--data", str(books / "val.txt")]
    assert cli_main(["eval", "reconstruct", *common, "--limit", "2", "--ratios", "2,4,8", "--methods", "r3mem",
                     "--json", str(out / "eval" / "reconstruct.json")]) == 0
    assert cli_main(["eval", "perplexity", *common, "--limit", "2", "--history", "16,32", "--stride", "16",
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
    gain = metrics["perplexity"]["32"]
    assert gain["targets"] == 2 and "memory_gain_2se" in gain
    assert set(metrics["ablations"]) == {"full", "no-cyc"}
    assert [row["step"] for row in metrics["ablations"]["no-cyc"]] == [2]
    first = metrics["ablations"]["full"][0]
    assert first["rec_acc_r4"] is not None and isinstance(first["elapsed_s"], int)
    text = (out / "MODEL_CARD.md").read_text()
    assert "r3mem eval reconstruct" in text and "r3mem eval perplexity" in text
    assert "**no**" in text and "Hand-written reading" in text
    assert (out / "loss_curve.png").is_file()


def test_card_on_a_missing_run_is_one_line_error(tmp_path, capsys):
    assert card.main(["write", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
