"""Soak the service under faults, many times over, and check that no acknowledged write suffers.

The fast tests (tests/service/test_service_crash.py, tests/service/test_faults.py) inject each fault once or
twice; a fault that bites one time in fifty needs repetition, which is what this is for
(`make soak`). Every run ends with the same check: every add the service acknowledged is
present whole with intact checksums, and nothing unacknowledged is half there.

    scripts/soak.py kill --repeats 50 --store sqlite     # SIGKILL `r3mem serve` mid-writes
    scripts/soak.py pg-restart --repeats 5               # restart PostgreSQL under load
    scripts/soak.py disk-full --repeats 10               # fill the disk, refuse, free it, go on

The server runs the tiny random model of the tests by default (a restart takes seconds,
and the faults are in the service and the store, not the model); --model picks another.
Exits 1 when any check fails. Needs root for disk-full (it mounts a 2 MB tmpfs).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fault helpers live beside the tests that use them

from tests.faults import (  # noqa: E402
    ALICE,
    STORE_DOWN,
    TEXT,
    Server,
    Tally,
    check_store,
    fill,
    fresh_store,
    kill_during_writes,
    new_key,
    restart_postgres_under_load,
    small_filesystem,
)


def tiny_model(directory: Path) -> Path:
    from tests.conftest import tiny_base

    base, path = tiny_base(), directory / "tiny-model"
    base.model.save_pretrained(path)
    base.tokenizer.save_pretrained(path)
    return path


def soak_kill(store: str, repeats: int, model: Path | None, work: Path, seed: int) -> dict:
    """`repeats` times: start the server, SIGKILL it at a random moment of the writing."""
    rng, tally = random.Random(seed), Tally()
    with fresh_store(store, work) as url:
        key = new_key(url)
        server = Server(url, model, work / f"kill-{store}.log")
        starts = []
        for i in range(repeats):
            starts.append(kill_during_writes(server, key, tally, delay=rng.uniform(0.0, 1.0)))
            print(f"kill {store} {i + 1}/{repeats}: {len(tally.acked)} adds acknowledged so far", file=sys.stderr)
        starts.append(server.start())  # it comes back on the same store
        try:
            stats = httpx.get(f"{server.url}/v1/stats", params={"user": ALICE.user},
                              headers={"X-API-Key": key}, timeout=30).json()
        finally:
            server.stop()
        report = check_store(url, tally.acked)
    report.update(fault="kill", store=store, kills=repeats, restart_s_max=round(max(starts), 2),
                  restart_s_mean=round(sum(starts) / len(starts), 2), stats_agree=stats["records"] == report["records"])
    return report


def soak_pg_restart(repeats: int, model: Path | None, work: Path, outage: float) -> dict:
    """`repeats` PostgreSQL restarts under one server, which must not need restarting."""
    tally, rounds = Tally(), []
    with fresh_store("postgres", work) as url:
        key = new_key(url)
        server = Server(url, model, work / "pg-restart.log")
        server.start()
        try:
            for i in range(repeats):
                seen = restart_postgres_under_load(server, key, tally, outage=outage)
                rounds.append(seen)
                print(f"pg-restart {i + 1}/{repeats}: {seen['during_outage']} during the outage, "
                      f"recovered in {seen['recover_s']} s", file=sys.stderr)
        finally:
            server.stop()
        report = check_store(url, tally.acked)
    bad = [r for r in rounds if not r["server_alive"] or r["recover_s"] is None
           or set(r["during_outage"]) - {200, 201, 503} or set(r["after_recovery"]) - {200, 201}]
    report.update(fault="pg-restart", store="postgres", restarts=repeats,
                  refused_503=sum(r["during_outage"].get(503, 0) for r in rounds),
                  outage_s_max=max(r["outage_s"] for r in rounds),
                  recover_s_max=max((float("inf") if r["recover_s"] is None else r["recover_s"]) for r in rounds),
                  body_503=rounds[0]["body_503"] if rounds else "", bad_rounds=bad)
    return report


def soak_disk_full(repeats: int, model: Path | None, work: Path) -> dict:
    """`repeats` times: fill the disk under the SQLite store, add until refused, free the space."""
    tally, cycles = Tally(), []
    with small_filesystem(size_mb=2) as mount:
        url = f"sqlite:///{mount / 'store.sqlite3'}"
        key = new_key(url)
        server = Server(url, model, work / "disk-full.log")
        server.start()
        try:
            with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as client:
                for i in range(repeats):
                    cycles.append(_disk_full_cycle(client, mount, tally, i))
                    print(f"disk-full {i + 1}/{repeats}: {cycles[-1]}", file=sys.stderr)
            alive, log = server.alive(), server.log()
        finally:
            server.stop()
        report = check_store(url, tally.acked)
    report.update(fault="disk-full", store="sqlite", cycles=repeats, server_alive=alive,
                  refused_clearly=all(c["refused_clearly"] for c in cycles),
                  recovered=all(c["recovered"] for c in cycles), log_says_full="disk is full" in log,
                  reads_while_full=all(c["reads_while_full"] for c in cycles),
                  adds_before_refusal=[c["adds_until_refused"] for c in cycles])
    return report


def _disk_full_cycle(client: httpx.Client, mount: Path, tally: Tally, cycle: int) -> dict:
    def add(n: int) -> httpx.Response:
        r = client.post("/v1/memories", json={"namespace": ALICE.as_dict(), "text": TEXT.format(n=f"{cycle}-{n}")})
        if r.status_code == 201:
            tally.acked.append([rec["id"] for rec in r.json()["records"]])
        return r

    add(-1)
    filler = fill(mount)
    refused, n = None, 0
    for n in range(300):  # bounded: the WAL may hold a few more adds
        r = add(n)
        if r.status_code != 201:
            refused = r
            break
    ok_reads = all(client.get(f"/v1/memories/{ids[0]}", params={"user": ALICE.user}).status_code == 200
                   for ids in tally.acked[-5:])
    filler.unlink()
    return {"adds_until_refused": n, "status": None if refused is None else refused.status_code,
            "refused_clearly": refused is not None and refused.status_code == 503
            and refused.json() == {"error": STORE_DOWN}, "reads_while_full": ok_reads,
            "recovered": add(10_000).status_code == 201}


def failed(report: dict) -> list[str]:
    problems = []
    if report["acknowledged_adds"] == 0:
        problems.append("no add was acknowledged")
    problems += [f"{k}={report[k]}" for k in ("lost", "corrupt", "torn") if report[k]]
    problems += [k for k in ("stats_agree", "server_alive", "refused_clearly", "recovered", "log_says_full",
                             "reads_while_full") if k in report and not report[k]]
    if report.get("bad_rounds"):
        problems.append(f"{len(report['bad_rounds'])} bad restart round(s)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fault", choices=("kill", "pg-restart", "disk-full"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "postgres"), help="for kill")
    parser.add_argument("--model", type=Path, help="model dir for the server (default: the tests' tiny model)")
    parser.add_argument("--outage", type=float, default=2.0, help="seconds PostgreSQL stays down (pg-restart)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="r3mem-soak-") as tmp:
        work = Path(tmp)
        model = args.model or tiny_model(work)
        if args.fault == "kill":
            report = soak_kill(args.store, args.repeats, model, work, args.seed)
        elif args.fault == "pg-restart":
            report = soak_pg_restart(args.repeats, model, work, args.outage)
        else:
            try:
                report = soak_disk_full(args.repeats, model, work)
            except PermissionError as exc:  # not root, and no way to mount a small filesystem
                print(f"soak disk-full: SKIPPED: {exc}", file=sys.stderr)
                return 0
    report["seconds"] = round(time.monotonic() - began, 1)
    problems = failed(report)
    report["ok"] = not problems
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if problems:
        print(f"soak {args.fault}: FAILED: {'; '.join(problems)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
