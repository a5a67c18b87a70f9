"""The shipped checkpoint: a run's weights copied into the repository, and its model card.

    python -m r3mem.train.card ship  RUN OUT   # the run's latest validated checkpoint, fp16
    python -m r3mem.train.card write RUN OUT   # OUT/metrics.json and OUT/MODEL_CARD.md

`make card` runs both with the evaluations between them. `write` reads only files: the
run's log (steps, wall time, machines, token counts, the validation curve), its config,
and the evaluation JSONs under OUT/eval/, so every figure in the card comes from a file
that a named command wrote. fp16 halves the weights for git (the budget is 40 MB); the
evaluations measure the fp16 file that ships, not the fp32 one it came from.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from r3mem.checkpoint import read_checkpoint
from r3mem.decode.options import DEFAULT_BEAMS, Decoding
from r3mem.errors import R3MemError
from r3mem.eval.common import spell_out
from r3mem.train.floors import floors, verdict

ABLATION_KEYS = ("rec_acc_r4", "rec_acc_r8", "rec_nll_r4", "lm_nll_memory_r4")
# reconstruct-cycle: the same segments decoded by cycle-consistent selection (`--samples`), which
# costs several times the default's time, so it is measured at the floors' ratios only;
# reconstruct-floors: the default decoding at the floors' ratios on more segments than the table's,
# so a floor is judged on a mean whose noise is small beside its margin
EVAL_FILES = {"reconstruct": "reconstruct.json", "reconstruct-cycle": "reconstruct-cycle.json",
              "reconstruct-floors": "reconstruct-floors.json", "perplexity": "perplexity.json"}
# runs/ablation-NAME: configs/ablation-NAME.toml, one short run with every loss ("full") and
# the same run with one loss weight set to 0, same seed and batches; the last one runs L_rec
# alone for as long (in seconds) as "full" trains
ABLATIONS = ("full", "no-hier", "no-cyc", "rec-only", "rec-only-equal-time")


# what an evaluation JSON records of how it decoded, copied into metrics.json
DECODING_KEYS = ("beams", "cycle_samples", "guidance", "guidance_spread", "guidance_bag", "wall_s")

def ship(run: Path, out: Path, model: str | None = None) -> str:
    """Copy the run's latest checkpoint into `out` as fp16; return its fingerprint."""
    from r3mem.api import R3Mem
    from r3mem.base_model import load_base_model

    base = load_base_model(model)
    ckpt = read_checkpoint(run / "checkpoint", expect_fingerprint=base.fingerprint)
    r3 = R3Mem.from_base(base, ckpt)
    info = dict(ckpt.info) | {"source_run": str(run), "source_fingerprint": ckpt.fingerprint}
    return r3.save_checkpoint(out, info=info, half=True)


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def read_log(run: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(training rows, validation rows, start events) of a run's log.jsonl."""
    return _split(_rows(run))


def _split(rows: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    starts = [r for r in rows if r.get("event") == "start"]
    val = [r for r in rows if r.get("val")]
    train = [r for r in rows if "event" not in r and not r.get("val")]
    return train, val, starts


def training_summary(run: Path, step: int) -> dict:
    """Steps, wall time, tokens read and machines, up to the shipped `step`."""
    rows = _rows(run)
    train, val, starts = _split(rows)
    train = [r for r in train if r["step"] <= step]
    config = json.loads((run / "state" / "trainer.json").read_text()).get("config", {})
    batch = config.get("batch_size", 0) * config.get("grad_accum", 1)
    first = starts[0] if starts else {}
    return {
        "steps": step,
        "train_seconds": round(train[-1]["elapsed_s"]) if train else 0,
        # each step reads a window of two segments per sample
        "segment_tokens_seen": sum(2 * r["seg_len"] * batch for r in train),
        "train_texts": first.get("train_texts"), "train_tokens": first.get("train_tokens"),
        "val_texts": first.get("val_texts"), "val_tokens": first.get("val_tokens"),
        "val_books": config.get("val_books"),
        "machines": sorted({f"{s['machine']}{', ' + s['gpu'] if 'gpu' in s else ''}, {s['threads']} threads, "
                            f"torch {s['torch']}" for s in starts}),
        "config": config,
        "validation_curve": [{k: v for k, v in r.items() if k != "val"} for r in val if r["step"] <= step],
        # Where each cycle was forked and what its config changed: the recipe is not one file.
        "lineage": [r for r in rows if r.get("event") in ("fork", "config-change") and r["step"] <= step],
    }


def _lineage_lines(lineage: list[dict]) -> list[str]:
    lines = []
    for row in lineage:
        if row["event"] == "fork":
            lines.append(f"  - step {row['step']}: forked from `{row['from']}`")
        else:
            changed = "; ".join(f"{k} {json.dumps(a)} → {json.dumps(b)}" for k, (a, b) in row["changes"].items()
                                if k != "out_dir")
            lines.append(f"  - step {row['step']}: config changed: {changed}")
    return ["- lineage (forks and config changes, from the log):", *lines] if lines else []


def _decoding(result: dict | None) -> str:
    """How the card's reconstructions were decoded: results written before beams were recorded
    were greedy, the only decoding there was then."""
    return Decoding.from_record(result or {}).describe()


def reconstruction(result: dict) -> dict:
    """ratio -> the r3mem row's metrics."""
    keys = ("token_accuracy", "token_accuracy_se", "aligned_token_accuracy", "exact_match", "bleu4", "rougeL",
            "char_similarity", "entity_recall", "n")
    return {str(r["ratio"]): {k: r.get(k) for k in keys}
            for r in result["rows"] if r["method"] == "r3mem"}


def samples(result: dict) -> list[dict]:
    """r3mem's first held-out segment at every ratio, as the evaluation regenerated it."""
    return [x for x in result.get("samples", []) if x["method"] == "r3mem" and x["segment"] == 0]


def _render_samples(shown: list[dict]) -> list[str]:
    if not shown:
        return ["No samples in `eval/reconstruct.json` (written before it kept them); `make card` adds them.", ""]
    lines = ["The first held-out segment, compressed and regenerated by the command above at each ratio. "
             "Text is shown verbatim, newlines included.", ""]
    for x in shown:
        lines += [f"**Ratio {x['ratio']}** (token accuracy {x['token_accuracy']:.3f}, aligned "
                  f"{x['aligned_token_accuracy']:.3f})", "", "Source:", "", "~~~~text", x["source"], "~~~~", "",
                  "Reconstruction:", "", "~~~~text", x["reconstruction"], "~~~~", ""]
    return lines


def _render_cycle(cycle: dict, recon: dict, ev: dict, provenance: str = "") -> list[str]:
    """The cycle-consistent rows beside the default decoding's, on the same segments."""
    if not cycle:
        return []
    keys = ("token_accuracy", "aligned_token_accuracy", "bleu4", "exact_match", "entity_recall")
    tables = {"default": recon, "cycle-consistent": cycle}
    # beside another checkpoint's rows the default decoding's would compare different weights
    names = ("cycle-consistent",) if provenance else ("default", "cycle-consistent")
    rows = [[f"{r} ({name})", *(tables[name][r][k] for k in keys)]
            for r in cycle for name in names if tables[name].get(r)]
    wall = f" It took {ev['wall_s'] / 60:.0f} minutes." if ev.get("wall_s") else ""
    return ["### Cycle-consistent selection\n",
            f"Command: `{ev.get('command')}`.{provenance} The same segments, regenerated {_decoding(ev)}; "
            f"source digests are not consulted, so this is what the memory alone gives back.{wall}\n",
            _table(["ratio (decoding)", "token accuracy", "aligned token accuracy", "BLEU-4", "exact match",
                    "entity recall"], rows), ""]


def perplexity(result: dict) -> dict:
    """history -> ppl per method, and memory - window (paired, nats) with its 95 % interval."""
    out: dict = {}
    for row in result["rows"]:
        out.setdefault(row["history"], {})[row["method"]] = round(row["ppl"], 3)
    for delta in result.get("memory_minus_window", []):
        out[delta["history"]] |= {"memory_minus_window_nats": delta["memory_minus_window_nats"],
                                  "ci95": [delta["ci95_low"], delta["ci95_high"]], "targets": delta["n"]}
    return out


def reproducible_command(ev: dict) -> str | None:
    """The evaluation's command as it must be typed today to decode as it did: a run that relied on
    an older default beam width gets that width spelled out, so the card's commands keep reproducing
    its figures after the default changes. `r3mem eval reconstruct` now records its decoding flags
    itself (`eval.common.spell_out`); this repairs the results written before it did."""
    command = ev.get("command")
    if command and "beams" in ev and ev["beams"] != DEFAULT_BEAMS:
        return shlex.join(spell_out(shlex.split(command), {"--beams": str(ev["beams"])}))
    return command


def _judged(current: dict, *names: str) -> dict:
    """ratio -> row tagged with the evaluation it came from; a later name's ratio replaces an earlier's."""
    return {ratio: row | {"evaluation": name} for name in names for ratio, row in current.get(name, {}).items()}


def collect(run: Path, out: Path) -> dict:
    ckpt = read_checkpoint(out)
    evals = {name: json.loads((out / "eval" / file).read_text())
             for name, file in EVAL_FILES.items() if (out / "eval" / file).is_file()}
    recon = reconstruction(evals["reconstruct"]) if "reconstruct" in evals else {}
    cycle = reconstruction(evals["reconstruct-cycle"]) if "reconstruct-cycle" in evals else {}
    wide = reconstruction(evals["reconstruct-floors"]) if "reconstruct-floors" in evals else {}
    ppl = perplexity(evals["perplexity"]) if "perplexity" in evals else {}
    # an evaluation of other weights (say, the checkpoint this one replaced) is shown, marked, and never
    # counted towards a floor
    stale = sorted(name for name, ev in evals.items() if ev.get("checkpoint") != ckpt.fingerprint)
    current = {name: table for name, table in (("reconstruct", recon), ("reconstruct-cycle", cycle),
                                               ("reconstruct-floors", wide), ("perplexity", ppl))
               if name not in stale}
    ablations = {}
    for name in ABLATIONS:
        other = run.parent / f"ablation-{name}"
        validations = read_log(other)[1] if (other / "log.jsonl").is_file() else []
        if validations:  # every validation, so runs compare at equal steps and at equal seconds
            ablations[name] = [{"step": v["step"], **{k: v.get(k) for k in ABLATION_KEYS},
                                "elapsed_s": round(v.get("elapsed_s", 0))} for v in validations]
    return {
        "checkpoint": ckpt.fingerprint, "base_model": ckpt.base_model,
        "memory_config": ckpt.config.to_json(),
        "weights_bytes": (out / "weights.safetensors").stat().st_size,
        "training": training_summary(run, int(ckpt.info.get("step", 0))),
        "reconstruction": recon, "reconstruction_cycle": cycle, "perplexity": ppl,
        # a ratio measured on the wider sample is judged on it, the rest on the table's segments; each
        # row says which evaluation it came from
        "floors": floors(_judged(current, "reconstruct", "reconstruct-floors"), current.get("perplexity", {}),
                         _judged(current, "reconstruct-cycle")),
        "ablations": ablations, "stale_evaluations": stale,
        "samples": samples(evals["reconstruct"]) if "reconstruct" in evals else [],
        "evaluations": {name: {"command": reproducible_command(ev), "data": ev["data"], "run": ev.get("run"),
                               "segment_len": ev.get("segment_len"), "checkpoint": ev.get("checkpoint"),
                               **{k: ev[k] for k in DECODING_KEYS if k in ev}}
                        for name, ev in evals.items()},
    }


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("—" if c is None else f"{c:.3f}" if isinstance(c, float) else str(c)
                                for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _provenance(metrics: dict, name: str) -> str:
    """A warning for an evaluation of weights other than the card's, or nothing."""
    if name not in metrics.get("stale_evaluations", []):
        return ""
    measured = (metrics["evaluations"].get(name) or {}).get("checkpoint")
    return (f" **Measured on checkpoint `{measured}`, not on this one**: shown for reference, not counted "
            "towards the floors; `make card` re-measures it.")


def _floors_intro(metrics: dict) -> str:
    """Which evaluation the accuracy floors were judged on, as the checks themselves record it."""
    judged_on = {check.get("evaluation") for check in metrics["floors"].values()}
    wide = metrics["evaluations"].get("reconstruct-floors") if "reconstruct-floors" in judged_on else None
    if not wide:
        source = "on the reconstruction table's evaluation below"
    else:
        source = (f"on `{wide.get('command')}` at the ratios it measured, and on the reconstruction table's "
                  f"evaluation below at any other. That wider sample was regenerated {_decoding(wide)}")
    return (f"Accuracy floors are judged {source}. The interval is the mean ± 1.96 standard errors over "
            "segments; a floor counts as met outright only when the whole interval clears it.\n")


def render(metrics: dict, notes: str) -> str:
    t = metrics["training"]
    recon, ppl, fl = metrics["reconstruction"], metrics["perplexity"], metrics["floors"]
    ev = metrics["evaluations"]
    parts = [
        "# r3mem checkpoint: SmolLM2-135M-Instruct + R³Mem adapters\n",
        "Generated by `python -m r3mem.train.card write` from the run log and the evaluation JSONs in "
        "`eval/`; `make card` regenerates everything. Loaded by `R3Mem.load()` with no arguments.\n",
        f"- checkpoint fingerprint `{metrics['checkpoint']}`; weights {metrics['weights_bytes'] / 1e6:.1f} MB (fp16)",
        f"- base model `{metrics['base_model']}` (frozen); two LoRA adapters (compress, expand), rank "
        f"{metrics['memory_config']['lora_rank']}; segment {metrics['memory_config']['segment_len']} tokens, "
        f"up to {metrics['memory_config']['max_memory_tokens']} memory vectors",
        "",
        "## Floors (issue 4), on held-out text\n",
        _floors_intro(metrics),
        _table(["check", "floor", "measured", "segments", "95 % interval", "met"],
               [[k, v.get("floor", "gain > 2 SE"), v.get("measured", v.get("gain_nats")), v.get("segments"),
                 "–".join(f"{x:.3f}" for x in v["interval_95"]) if v.get("interval_95") else None, verdict(v)]
                for k, v in fl.items()]),
        "",
        "## Reconstruction from memory\n",
        f"Command: `{(ev.get('reconstruct') or {}).get('command')}`.{_provenance(metrics, 'reconstruct')} "
        "Each segment is compressed alone and "
        f"regenerated {_decoding(ev.get('reconstruct'))}; token accuracy is position-wise agreement of the "
        "regenerated tokens "
        "with the source (stricter than the teacher-forced accuracy logged during training; the floors "
        "apply to it). Aligned accuracy is LCS / max(length) over tokens: it forgives a shift, not a "
        "missing, wrong or extra token.\n",
        _table(["ratio", "token accuracy", "aligned token accuracy", "BLEU-4", "exact match", "ROUGE-L",
                "entity recall", "segments"],
               [[r, v["token_accuracy"], v["aligned_token_accuracy"], v["bleu4"], v["exact_match"], v["rougeL"],
                 v["entity_recall"], v["n"]]
                for r, v in recon.items()]),
        "",
        *_render_cycle(metrics.get("reconstruction_cycle") or {}, recon, ev.get("reconstruct-cycle") or {},
                       _provenance(metrics, "reconstruct-cycle")),
        "### What comes back\n",
        *_render_samples(metrics.get("samples", [])),
        "## Long-context perplexity\n",
        f"Command: `{(ev.get('perplexity') or {}).get('command')}`.{_provenance(metrics, 'perplexity')} "
        "Perplexity of the next 128 tokens; "
        "memory and window get the same number of positions; memory − window is the paired mean per-target "
        "NLL difference with its 95 % interval over targets (negative: the memory reads better).\n",
        _table(["history", "no context", "window", "memory", "full raw context (ceiling)",
                "memory − window (nats)", "95 % interval", "targets"],
               [[h, v.get("no_context"), v.get("window"), v.get("memory"), v.get("full_context"),
                 v.get("memory_minus_window_nats"), v.get("ci95"), v.get("targets")] for h, v in ppl.items()]),
        "",
        "## Training\n",
        f"- data: {t['train_texts']} training texts, {t['train_tokens']:,} tokens (`r3mem.train.data.load_texts`: "
        f"books, WikiText, SQuAD contexts, LoCoMo conversations); validation: {', '.join(t['val_books'] or [])} "
        f"({t['val_tokens']:,} tokens), never trained on",
        f"- steps: {t['steps']}; segment tokens read: {t['segment_tokens_seen']:,}; wall time: "
        f"{t['train_seconds'] / 3600:.2f} h",
        f"- hardware: {'; '.join(t['machines']) or 'not recorded'}",
        f"- config: `configs/{Path(t['config'].get('out_dir', 'run')).name}.toml`",
        *_lineage_lines(t.get("lineage", [])),
        "",
        "```toml", *(f"{k} = {json.dumps(v)}" for k, v in t["config"].items()), "```",
        "",
        "Learning curve (held-out validation, 8 windows of 128-token segments; acc is teacher-forced, "
        "free-running acc is the position-wise accuracy of a greedy expansion, guided acc the same expansion "
        "with pool guidance, — where the trainer did not log it yet): "
        "![curve](loss_curve.png)\n",
        _table(["step", "acc @4", "acc @8", "free-running acc @4", "free-running acc @8", "guided acc @4",
                "guided acc @8", "rec NLL @4", "LM NLL with memory @4", "LM NLL no context"],
               [[r["step"], r.get("rec_acc_r4"), r.get("rec_acc_r8"), r.get("gen_acc_r4"), r.get("gen_acc_r8"),
                 r.get("guided_acc_r4"), r.get("guided_acc_r8"), r.get("rec_nll_r4"), r.get("lm_nll_memory_r4"),
                 r.get("lm_nll_no_context")]
                for r in t["validation_curve"]]),
        "",
        "## Ablations\n",
        "One short run with every loss (`full`) and the same run with one loss weight at 0 "
        "(`configs/ablation-NAME.toml`: same seed, same batches), validated on the same held-out windows; "
        "`rec-only-equal-time` is the `L_rec`-only run continued to about the wall time of `full`. "
        "Train seconds is the wall time of the run's training steps: a loss that does not raise accuracy "
        "per step may still not pay for its cost per second.\n",
        _table(["run", "step", "acc @4", "acc @8", "rec NLL @4", "LM NLL with memory @4", "train seconds"],
               [[name, a["step"], *(a.get(k) for k in ABLATION_KEYS), a["elapsed_s"]]
                for name, rows in metrics["ablations"].items() for a in rows])
        if metrics["ablations"] else "Not run yet for this checkpoint (see the notes).",
        "",
        notes.strip(),
        "",
    ]
    return "\n".join(parts)


def write(run: Path, out: Path, notes_path: Path | None) -> dict:
    metrics = collect(run, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    if (run / "loss_curve.png").is_file():
        shutil.copy2(run / "loss_curve.png", out / "loss_curve.png")
    notes = notes_path.read_text() if notes_path and notes_path.is_file() else ""
    (out / "MODEL_CARD.md").write_text(render(metrics, notes))
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r3mem.train.card")
    parser.add_argument("action", choices=("ship", "write"))
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--notes", type=Path, help="markdown appended to the card (what the figures mean)")
    parser.add_argument("--model", help="base model the run trained (default: SmolLM2-135M-Instruct)")
    args = parser.parse_args(argv)
    try:
        if args.action == "ship":
            print(ship(args.run, args.out, args.model))
        else:
            print(json.dumps(write(args.run, args.out, args.notes)["floors"], indent=1))
    except (R3MemError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
