"""Load test of `r3mem serve`: N concurrent clients mixing add (50%), recall (40%) and ask (10%).

Why: the service runs every model call (add, recall, ask) on one model thread, in arrival
order, behind a queue bounded by `Settings.max_pending` (64). More clients therefore buy no
throughput; they buy latency, roughly in proportion to N, and past 64 waiting calls a
request is refused at once with 503 and `Retry-After: 1`. This measures both effects on
SQLite and PostgreSQL, and checks that nothing fails under load: every non-2xx answer or
exception counts as an error, a 503 from the full queue included.

Each client has one request in flight at a time, so at most N model calls wait and N <= 64
never fills the queue; N > 64 would, by design. A client's timeout (--timeout) does not
cancel the server's work, so it is generous: a retry after a timeout would add to the queue.

For each store and each N, a fresh store (a temporary SQLite file, or a PostgreSQL schema of
its own) and a fresh `r3mem serve` on a free loopback port; or --url to load a running server
(then --key, an API key whose scope includes --user). Each client writes to and reads from
its own namespace (user=--user, agent=cI); its first request is an add, so recall and ask
always have something to find. Latency percentiles are over successful requests.

    scripts/loadtest.py --clients 1,4,16,64 --store sqlite,postgres --json loadtest.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the server harness lives beside the tests that use it

from tests.faults import Server, fresh_store  # noqa: E402

from r3mem.service.keys import create_api_key  # noqa: E402
from r3mem.service.settings import Settings  # noqa: E402
from r3mem.store.location import open_backend  # noqa: E402
from r3mem.store.namespace import Namespace  # noqa: E402

MIX = {"add": 0.5, "recall": 0.4, "ask": 0.1}
NAMES = ("Alice", "Bob", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana")
CITIES = ("Paris", "Lagos", "Osaka", "Lima", "Oslo", "Pune", "Quito", "Rome")
NOTE = ("{name} flew to {city} on {day} May and paid {price} dollars for a room near the station. "
        "The hotel was quiet.\n\n{name} met {friend} at noon for lunch. They talked about the trip "
        "to {city} and agreed to meet again in June.")


@dataclass
class Sample:
    op: str
    seconds: float
    outcome: int | str  # HTTP status, or the exception's type name


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    first_errors: list[str] = field(default_factory=list)


def _body(op: str, namespace: dict, rng: random.Random) -> dict:
    name, friend = rng.sample(NAMES, 2)
    city = rng.choice(CITIES)
    if op == "add":
        return {"namespace": namespace, "text": NOTE.format(name=name, friend=friend, city=city,
                                                            day=rng.randint(1, 28), price=rng.randint(40, 400))}
    if op == "recall":
        return {"namespace": namespace, "query": f"Where did {name} fly in May?", "top_k": 3}
    return {"namespace": namespace, "question": f"How much did {name} pay in {city}?"}


def _client(index: int, url: str, key: str, user: str, args: argparse.Namespace, deadline: float, run: Run) -> None:
    rng = random.Random(args.seed * 1000 + index)
    namespace = {"user": user, "agent": f"c{index}"}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=args.timeout) as client:
        for n in range(args.requests):
            if time.monotonic() >= deadline:
                return
            op = "add" if n == 0 else rng.choices(list(MIX), weights=list(MIX.values()))[0]
            began = time.perf_counter()
            try:
                r = client.post(f"/v1/{'memories' if op == 'add' else op}", json=_body(op, namespace, rng))
                outcome: int | str = r.status_code
                error = "" if r.is_success else f"{op}: {r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                outcome, error = type(exc).__name__, f"{op}: {type(exc).__name__} {exc}"
            with run.lock:
                run.samples.append(Sample(op, time.perf_counter() - began, outcome))
                if error and len(run.first_errors) < 5:
                    run.first_errors.append(error)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summarise(samples: list[Sample], seconds: float) -> dict:
    def ok(s: Sample) -> bool:
        return isinstance(s.outcome, int) and 200 <= s.outcome < 300

    ops = {}
    for op in [*MIX, "all"]:
        chosen = [s for s in samples if op in ("all", s.op)]
        good = [s.seconds * 1000 for s in chosen if ok(s)]
        ops[op] = {"requests": len(chosen), "errors": len(chosen) - len(good),
                   "throughput_rps": round(len(good) / seconds, 3) if seconds > 0 else None,
                   **{f"p{p}_ms": None if not good else round(percentile(good, p), 1) for p in (50, 95, 99)}}
    return ops


def load(url: str, key: str, user: str, clients: int, args: argparse.Namespace) -> dict:
    """`clients` threads against the server at `url`; the figures of this one run."""
    run = Run()
    began = time.monotonic()
    threads = [threading.Thread(target=_client, args=(i, url, key, user, args, began + args.seconds, run),
                                daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.seconds + args.timeout + 60)  # bounded even if a request hangs
    seconds = time.monotonic() - began
    return {"clients": clients, "seconds": round(seconds, 1), "ops": summarise(run.samples, seconds),
            "first_errors": run.first_errors}


def _warm_up(url: str, key: str, user: str) -> None:
    """One untimed add and recall: first-call costs (caches, lazy imports) stay out of the figures."""
    namespace = {"user": user, "agent": "warmup"}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
        for path, body in (("/v1/memories", {"namespace": namespace, "text": NOTE.format(
                name="Ivo", friend="Jun", city="Kyiv", day=2, price=90)}),
                ("/v1/recall", {"namespace": namespace, "query": "Where did Ivo fly?"})):
            r = client.post(path, json=body)
            if not r.is_success:
                raise SystemExit(f"loadtest: warm-up {path} failed: {r.status_code} {r.text[:300]}")


def run_store(store: str, args: argparse.Namespace, work: Path) -> list[dict]:
    """One fresh store and server per client count."""
    results = []
    for clients in args.clients:
        with fresh_store(store, work, args.postgres_url) as url:
            backend = open_backend(url)
            key = create_api_key(backend, Namespace(user=args.user), "loadtest")
            backend.close()
            server = Server(url, args.model, work / f"server-{store}-{clients}.log")
            print(f"loadtest: {store}, {clients} client(s): starting the server", file=sys.stderr)
            started = server.start(timeout=600)
            try:
                _warm_up(server.url, key, args.user)
                result = load(server.url, key, args.user, clients, args)
            finally:
                server.stop()
        results.append({"store": store, "server_start_s": round(started, 1), **result})
        print(table([results[-1]]), file=sys.stderr)
    return results


def table(results: list[dict]) -> str:
    def cell(value) -> str:
        return "-" if value is None else f"{value:g}"

    lines = ["| store | clients | op | requests | errors | req/s | p50 ms | p95 ms | p99 ms |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        for op, f in result["ops"].items():
            lines.append(f"| {result['store']} | {result['clients']} | {op} | {f['requests']} | {f['errors']} | "
                         f"{cell(f['throughput_rps'])} | {cell(f['p50_ms'])} | {cell(f['p95_ms'])} | "
                         f"{cell(f['p99_ms'])} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1,4,16,64", help="comma-separated client counts (default: 1,4,16,64)")
    p.add_argument("--requests", type=int, default=20, help="most requests per client and run (default: 20)")
    p.add_argument("--seconds", type=float, default=120, help="no request starts after this many seconds of a run")
    p.add_argument("--timeout", type=float, default=900, help="seconds one request may take (default: 900)")
    p.add_argument("--store", default="sqlite", help="comma-separated: sqlite, postgres (default: sqlite)")
    p.add_argument("--model", help="model dir for the server (default: the default model)")
    p.add_argument("--postgres-url", help="PostgreSQL server for --store postgres (default: "
                                          "$R3MEM_TEST_POSTGRES_URL, else scripts/postgres-test-server.sh)")
    p.add_argument("--url", help="load this running server instead of starting one (needs --key)")
    p.add_argument("--key", help="API key for --url")
    p.add_argument("--user", default="load", help="namespace user of every client (default: load)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    try:
        args.clients = [int(n) for n in args.clients.split(",")]
    except ValueError:
        p.error(f"--clients must be comma-separated integers, got {args.clients!r}")
    args.stores = [s.strip() for s in args.store.split(",")]
    if min(args.clients) < 1 or args.requests < 1 or args.seconds <= 0 or args.timeout <= 0:
        p.error("--clients, --requests, --seconds and --timeout must be positive")
    if set(args.stores) - {"sqlite", "postgres"}:
        p.error(f"--store must name sqlite and/or postgres, got {args.store!r}")
    if args.url and not args.key:
        p.error("--url needs --key, an API key whose scope includes --user")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    if args.url:
        for clients in args.clients:
            results.append({"store": "external", **load(args.url.rstrip("/"), args.key, args.user, clients, args)})
    else:
        with tempfile.TemporaryDirectory(prefix="r3mem-load-") as tmp:
            for store in args.stores:
                results += run_store(store, args, Path(tmp))
    meta = {"mix": MIX, "requests_per_client": args.requests, "seconds_per_run": args.seconds,
            "model": args.model or "default", "max_pending": Settings().max_pending, "url": args.url}
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "runs": results}, indent=2) + "\n")
    print(table(results))
    errors = sum(r["ops"]["all"]["errors"] for r in results)
    for r in results:
        for line in r["first_errors"]:
            print(f"loadtest: {r['store']} x{r['clients']}: {line}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
