"""The loss-curve PNG: losses, the learning rate where the log has it, and validation accuracy."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
from PIL import Image

from r3mem.train.validate import curve_figure, plot_curves


def _rows(with_rate: bool) -> list[dict]:
    rows: list[dict] = [{"event": "start", "step": 0}]
    for step in range(1, 21):
        row = {"step": step, "rec": 3.0 / step, "lm": 3.5, "acc": 0.01 * step}
        if with_rate:
            row["lr"] = 1e-3 * min(1.0, step / 5)
        rows.append(row)
        if step % 10 == 0:
            rows.append({"step": step, "val": True, "rec_acc_r4": 0.02 * step, "rec_acc_r8": 0.01 * step})
    return rows


def _line_labels(fig) -> list[list[str]]:
    return [[line.get_label() for line in ax.get_lines()] for ax in fig.axes]


def test_rate_gets_its_own_axis_beside_the_losses():
    fig = curve_figure(_rows(with_rate=True))
    labels = _line_labels(fig)
    plt.close(fig)
    assert ["L_rec", "L_lm"] in labels
    assert ["lr"] in labels
    assert ["rec_acc_r4", "rec_acc_r8"] in labels
    rate_line = next(ax for ax in fig.axes if ax.get_ylabel() == "learning rate").get_lines()[0]
    assert list(rate_line.get_xdata()) == list(range(1, 21))
    assert max(rate_line.get_ydata()) == 1e-3


def test_logs_from_before_the_rate_was_logged_still_plot():
    fig = curve_figure(_rows(with_rate=False))
    labels = _line_labels(fig)
    plt.close(fig)
    assert len(fig.axes) == 2
    assert all("lr" not in axis_labels for axis_labels in labels)


def test_plot_curves_writes_a_png_from_the_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in _rows(with_rate=True)))
    plot_curves(log, tmp_path / "curve.png")
    with Image.open(tmp_path / "curve.png") as img:
        assert img.format == "PNG"
        assert img.size == (1100, 400)
