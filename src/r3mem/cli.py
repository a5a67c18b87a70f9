"""The `r3mem` command line: thin wrappers, one library call per command.

Every `R3MemError` becomes one stderr line and the error's exit code:
1 any other error (an I/O error, or a bug: one line, R3MEM_DEBUG=1 shows the traceback),
2 bad input or usage (a path checked before any model loads), 3 model not found,
4 corrupt checkpoint or memory file, 5 checkpoint/memory made for another model,
6 record not found (in this namespace), 7 store unavailable or corrupt, 8 access denied,
9 a reconstruction that `--require-verified` refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from r3mem.cli_checks import preflight
from r3mem.decode.options import DEFAULT_BEAMS, DEFAULT_GUIDANCE, DEFAULT_SAMPLES, GUIDANCE_HELP, MAX_SAMPLES, Decoding
from r3mem.errors import InvalidInput, NotVerified, R3MemError


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="base model: a local directory or a locally cached id")
    p.add_argument("--checkpoint", help="checkpoint directory (default: the shipped one)")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda if present)")


def _load(args: argparse.Namespace):
    from transformers.utils import logging as hf_logging

    from r3mem.api import R3Mem

    # r3mem shows its own progress; the library's bars and notices would break the
    # promise of one stderr line per error.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # PEFT calls a transformers property that v5 deprecates; it is not the user's concern.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

    return R3Mem.load(model=args.model, checkpoint=args.checkpoint, device=args.device)


def cmd_compress(args: argparse.Namespace) -> int:
    from r3mem.textio import read_text_file

    text = read_text_file(args.file)  # fail on bad input before loading a model
    out = Path(args.output)
    if not out.parent.is_dir():
        raise InvalidInput(f"output directory does not exist: {out.parent}")
    r3 = _load(args)
    memory = r3.compress(text, ratio=args.ratio, progress=not args.quiet)
    memory.save(out)
    if not args.quiet:
        print(f"{memory.source_tokens} tokens -> {len(memory)} x {memory.memory_tokens} memory vectors "
              f"(ratio {memory.ratio:g}) written to {out}")
    return 0


def cmd_expand(args: argparse.Namespace) -> int:
    from r3mem.memory_file import Memory

    decoding = Decoding(beams=args.beams, samples=args.samples, guidance=args.guidance)  # before anything loads
    memory = Memory.load(args.memory)
    result = _load(args).expand_verified(memory, segment=args.segment, progress=not args.quiet, decoding=decoding)
    if args.require_verified and not result.exact:
        raise NotVerified(f"{result.summary()}; nothing written (--require-verified)")
    if not args.quiet:
        print(result.summary(), file=sys.stderr)
    text = result.text
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from r3mem.memory_file import Memory

    memory = Memory.load(args.memory)
    info = {
        "segments": len(memory),
        "memory_vectors_per_segment": memory.memory_tokens,
        "dim": int(memory.snapshots.shape[2]),
        "ratio": memory.ratio,
        "segment_len": memory.segment_len,
        "source_tokens": memory.source_tokens,
        "model": memory.model_name,
        "model_fingerprint": memory.model_fingerprint,
        "checkpoint_fingerprint": memory.checkpoint_fingerprint,
        "verifiable": memory.segment_digests is not None,
        "file_bytes": Path(args.memory).stat().st_size,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:<28} {value}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from r3mem.demo import DEMO_DECODING, run_demo

    # checked before the model loads
    decoding = DEMO_DECODING if args.beams is None else Decoding(beams=args.beams)
    t0 = time.perf_counter()
    r3 = _load(args)
    run_demo(r3, ratio=args.ratio, load_s=time.perf_counter() - t0, decoding=decoding)
    if args.conversation:
        from functools import partial

        from r3mem.demo_conversation import run_conversation_demo

        run_conversation_demo(r3, partial(print, flush=True))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from r3mem.eval.bench import format_table, run_bench

    result = run_bench(tokens=args.tokens, ratio=args.ratio,
                       gguf=not args.skip_gguf, model=args.model, checkpoint=args.checkpoint)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def cmd_bench_service(args: argparse.Namespace) -> int:
    from r3mem.eval.service_load import run_service_bench

    result = run_service_bench(store=args.store, clients=args.clients, seconds=args.seconds,
                               recall_share=args.recall_share, hostile=args.hostile, timeout=args.timeout,
                               seed=args.seed, serve_command=args.serve_command)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from r3mem.api import R3Mem
    from r3mem.base_model import load_base_model
    from r3mem.config import MemoryConfig
    from r3mem.train.config import TrainConfig
    from r3mem.train.loop import train

    if args.max_minutes is not None and not args.max_minutes > 0:
        raise InvalidInput(f"--max-minutes must be > 0, got {args.max_minutes}")
    cfg = TrainConfig.from_toml(args.config)
    if args.steps:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    if args.out:
        cfg = dataclasses.replace(cfg, out_dir=args.out)
    if args.fork_from:
        from r3mem.train.fork import fork_run

        step = fork_run(Path(args.fork_from), cfg)
        if not args.quiet:
            print(f"forked {args.fork_from} at step {step} into {cfg.out_dir}")
    base = load_base_model(args.model)
    r3 = R3Mem.from_base(base, None, args.device, MemoryConfig(**cfg.memory))
    stop_after_s = None if args.max_minutes is None else 60 * args.max_minutes
    train(cfg, r3, log=(lambda _: None) if args.quiet else print, stop_after_s=stop_after_s)
    return 0


def _command(argv: Sequence[str]) -> list[str]:
    """The command and its first word after it (`eval reconstruct`), read before parsing: the top-level
    parser has no option that takes a value, so the first words not starting with '-' are these."""
    return [word for word in argv if not word.startswith("-")][:2]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given `argv`, only the parts that command needs import their modules
    (an eval task's arguments import torch), so `r3mem --help` and store commands answer at once."""
    parser = argparse.ArgumentParser(prog="r3mem", description="Reversible compressed memory for LMs.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or chatter")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="compress a UTF-8 text file into a .r3m memory file")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help="the .r3m file to write")
    p.add_argument("--ratio", type=float, default=4, help="tokens per memory vector (default 4)")
    _model_args(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("expand", help="reconstruct text from a .r3m memory file")
    p.add_argument("memory")
    p.add_argument("--segment", type=int, help="expand only this segment (0-based)")
    p.add_argument("--beams", type=int, default=DEFAULT_BEAMS,
                   help=f"beam-search width; fewer answer sooner and slip more, 1 is greedy (default {DEFAULT_BEAMS})")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help="also draw this many samples per segment and keep the candidate that matches the "
                        "source digest, else the one re-compressing nearest the memory among those that read "
                        f"nearly as well as the likeliest (default {DEFAULT_SAMPLES}: the top beam; 0-{MAX_SAMPLES})")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help=GUIDANCE_HELP)
    p.add_argument("-o", "--output", help="write the text here instead of stdout")
    p.add_argument("--require-verified", action="store_true",
                   help="write nothing and exit 9 unless every segment regenerates its source exactly "
                        "(checked against the digests the file keeps)")
    _model_args(p)
    p.set_defaults(func=cmd_expand)

    p = sub.add_parser("info", help="describe a .r3m memory file")
    p.add_argument("memory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="compress and reconstruct a bundled passage the training never saw, then "
                                    "answer from a long conversation's first turns")
    p.add_argument("--ratio", type=float, default=4)
    p.add_argument("--no-conversation", dest="conversation", action="store_false",
                   help="skip the second part (facts told 19,000 tokens earlier in a stored conversation)")
    p.add_argument("--beams", type=int,
                   help=f"beam width (default: fewer than expand's {DEFAULT_BEAMS}, so the demo ends in a few minutes "
                        "on a CPU; the demo prints the decoding it used)")
    _model_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="throughput, peak RSS and load times")
    p.add_argument("--tokens", type=int, default=1024, help="tokens to compress, then expand")
    p.add_argument("--ratio", type=float, default=4)
    p.add_argument("--skip-gguf", action="store_true", help="skip timing the GGUF first load")
    p.add_argument("--json", help="also write the figures to this JSON file")
    _model_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-service", help="requests/s and latency of `r3mem serve` (real model) under N clients")
    p.add_argument("--store", help="store URL to serve (default: a fresh temporary SQLite file)")
    p.add_argument("--clients", type=int, default=16, help="ordinary clients, one request in flight each")
    p.add_argument("--seconds", type=float, default=60, help="how long clients start new requests")
    p.add_argument("--recall-share", type=float, default=0.8, help="share of recalls; the rest add chat turns")
    p.add_argument("--hostile", type=int, default=0, help="extra clients sending maximum-cost requests")
    p.add_argument("--timeout", type=float, default=120, help="client timeout per request, seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve-command", help="command that runs `r3mem` for the server (default: this Python's "
                                           "`-m r3mem.cli`), e.g. to measure another checkout")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_bench_service)

    p = sub.add_parser("train", help="train or resume a run from a TOML config")
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, help="override the config's step count")
    p.add_argument("--out", help="override the config's out_dir")
    p.add_argument("--fork-from", metavar="RUN",
                   help="start a new cycle from RUN's saved state (copies it and its log into out_dir, re-warms)")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="stop cleanly, state saved, at the first step past M minutes of training")
    p.add_argument("--model", help="base model (default: SmolLM2-135M-Instruct)")
    p.add_argument("--device", help="torch device (Accelerate picks one when launched by it)")
    p.set_defaults(func=cmd_train)

    from r3mem import store_cli

    store_cli.register(sub, _load, _model_args)

    from r3mem.eval import cli as eval_cli

    p = sub.add_parser("eval", help="evaluation harness: reconstruct, perplexity, qa, locomo, cost")
    words = _command(argv) if argv is not None else None
    eval_cli.register(p, None if words is None else words[1:] if words[:1] == ["eval"] else [])
    p.set_defaults(func=lambda a: eval_cli.run(a, _load))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    args.argv = argv  # results record the command that made them
    try:
        preflight(args)  # paths and model directories, before any model loads
        return args.func(args)
    except R3MemError as exc:
        print(f"r3mem: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("r3mem: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the disk filled, a file vanished or changed mode meanwhile
        print(f"r3mem: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line; R3MEM_DEBUG=1 shows the traceback
        if os.environ.get("R3MEM_DEBUG"):
            raise
        print(f"r3mem: internal error: {type(exc).__name__}: {_one_line(exc)} (R3MEM_DEBUG=1 shows where)",
              file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
