"""The results page names the command, machine and date beside every table."""

import json

from r3mem.eval import report


def test_render_from_json(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    result = {"task": "cost", "data": "/x/books/pg174.txt", "checkpoint": "untrained-seed0", "model": "M",
              "rows": [{"method": "raw_utf8", "bytes_per_token": 4.25}],
              "run": {"machine": "x86_64", "threads": 2, "torch": "2.13.0", "date": "2026-11-23 19:40 UTC"}}
    (out / "cost.json").write_text(json.dumps(result))
    (out / "cost.png").write_bytes(b"png")
    page = report.render(out, {"cost": 12.0})
    assert f"`r3mem {report.COMMANDS['cost']}`" in page
    assert "raw_utf8" in page and "4.25" in page and "2026-11-23 19:40 UTC" in page and "wall time 12 s" in page
    assert "![cost](results/cost.png)" in page
    assert "## qa" not in page  # tasks without results are left out, not invented


def test_main_render_only(tmp_path):
    (tmp_path / "results").mkdir()
    assert report.main(["--out", str(tmp_path / "results"), "--render-only"]) == 0
    assert (tmp_path / "results.md").read_text().startswith("# r3mem results")


def test_reconstruction_tables_say_how_they_were_decoded(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    for name, beams in (("reconstruct", 4), ("reconstruct-greedy", 1)):
        result = {"task": "reconstruct", "data": "/x/pg174.txt", "checkpoint": "c", "model": "M", "beams": beams,
                  "rows": [{"method": "r3mem", "ratio": 4, "token_accuracy": 0.5}], "run": {}}
        (out / f"{name}.json").write_text(json.dumps(result))
    page = report.render(out, {})
    beam_part, greedy_part = page.split("## reconstruct-greedy")
    assert "r3mem decoded by 4-beam search" in beam_part and "r3mem decoded greedily" in greedy_part
    assert "--beams 1" in greedy_part


def test_the_page_prints_the_command_a_result_recorded(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    recorded = "r3mem eval reconstruct --limit 8 --ratios 4 --beams 16 --samples 0 --guidance 4"
    result = {"task": "reconstruct", "data": "/x/pg174.txt", "checkpoint": "c", "model": "M", "beams": 16,
              "command": recorded, "rows": [{"method": "r3mem", "ratio": 4, "token_accuracy": 0.5}], "run": {}}
    (out / "reconstruct.json").write_text(json.dumps(result))
    assert f"- command: `{recorded}`" in report.render(out, {})
