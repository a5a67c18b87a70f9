"""`r3mem bench-service`: throughput and latency of `r3mem serve` under N concurrent clients.

Why a benchmark of its own: the service's figure of merit is requests/s and tail latency at a
given concurrency with the real default model, which no unit test can time. This starts
`r3mem serve` on loopback as a child process (the real model, a fresh or given store), gives
each client an API key of its own (so per-key rate limits measure each tenant, not the
benchmark), and runs `clients` asyncio clients (httpx) for `seconds`, each with one request in
flight: a recall with probability `recall_share`, else a chat-turn sized add (two messages).
`hostile` more clients send the most expensive requests the API accepts (memory-only records
read back at maximum beams and samples, the largest add); their answers are counted apart, and
the headline figures are the ordinary clients' only.

Requests still in flight at the deadline finish (up to `timeout`) and count; `req_per_s` is
completed ordinary requests over the time until the last one completed. An error is any
non-2xx answer or transport failure of an ordinary client. The machine's load average is
recorded beside the figures: on a shared CPU every latency is inflated by the other work.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

NAMES = ("Alice", "Bob", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana")
CITIES = ("Paris", "Lagos", "Osaka", "Lima", "Oslo", "Pune", "Quito", "Rome")
USER_TURN = "{name} told me {friend} is flying to {city} on {day} May and booked a room for {price} dollars."
ASSISTANT_TURN = "Noted: {friend} flies to {city} on {day} May; the room costs {price} dollars."
HOSTILE_TEXT = "On {day} May {name} paid {price} dollars for a room in {city} and met {friend} near the station. "


@dataclass
class Sample:
    op: str
    ms: float
    outcome: int | str  # HTTP status, or the exception's type name


@dataclass
class Tally:
    ordinary: list[Sample] = field(default_factory=list)
    hostile: list[Sample] = field(default_factory=list)
    first_errors: dict[str, str] = field(default_factory=dict)


def _turn(rng: random.Random) -> dict:
    name, friend = rng.sample(NAMES, 2)
    slots = {"name": name, "friend": friend, "city": rng.choice(CITIES), "day": rng.randint(1, 28),
             "price": rng.randint(40, 400)}
    return {"messages": [{"role": "user", "content": USER_TURN.format(**slots)},
                         {"role": "assistant", "content": ASSISTANT_TURN.format(**slots)}]}


def _query(rng: random.Random) -> str:
    # varied, as real queries are: a batch of identical queries would be embedded once
    return (f"Where is {rng.choice(NAMES)} flying on {rng.randint(1, 28)} May, and what did the room in "
            f"{rng.choice(CITIES)} cost?")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`r3mem serve` on a free loopback port, as a child process; its stderr goes to `log`."""

    def __init__(self, command: list[str], store_url: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--store", store_url]
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> float:
        began = time.monotonic()
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=err,
                                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"r3mem serve exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-1500:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"r3mem serve did not answer /healthz within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _call(http: httpx.AsyncClient, key: str, op: str, body: dict, tally: Tally, hostile: bool) -> None:
    path = {"add": "/v1/memories", "recall": "/v1/recall", "ask": "/v1/ask"}[op]
    began = time.perf_counter()
    try:
        response = await http.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
        outcome: int | str = response.status_code
        if response.status_code >= 300:
            tally.first_errors.setdefault(f"{op} {outcome}", response.text[:300])
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
        tally.first_errors.setdefault(f"{op} {outcome}", str(exc)[:300])
    except asyncio.CancelledError:  # a hostile request abandoned at the deadline: still in flight
        tally.hostile.append(Sample(op, (time.perf_counter() - began) * 1000, "unfinished"))
        raise
    sample = Sample(op, (time.perf_counter() - began) * 1000, outcome)
    (tally.hostile if hostile else tally.ordinary).append(sample)


async def _ordinary(http: httpx.AsyncClient, key: str, namespace: dict, rng: random.Random, share: float,
                    deadline: float, tally: Tally) -> None:
    while time.monotonic() < deadline:
        if rng.random() < share:
            await _call(http, key, "recall", {"namespace": namespace, "query": _query(rng), "top_k": 5}, tally, False)
        else:
            await _call(http, key, "add", {"namespace": namespace, **_turn(rng)}, tally, False)


def hostile_requests(namespace: dict, rng: random.Random) -> list[tuple[str, dict]]:
    """The dearest requests the API accepts: memory-only text read back at maximum decoding, and
    a maximum-length memory-only add (the store must compress it before answering)."""
    from r3mem.decode.options import MAX_BEAMS, MAX_GUIDANCE, MAX_SAMPLES
    from r3mem.store.validation import MAX_TEXT_CHARS

    decoding = {"beams": MAX_BEAMS, "samples": MAX_SAMPLES, "guidance": MAX_GUIDANCE}
    name, friend = rng.sample(NAMES, 2)
    sentence = HOSTILE_TEXT.format(name=name, friend=friend, city=rng.choice(CITIES), day=3, price=99)
    huge = (sentence * (MAX_TEXT_CHARS // len(sentence)))[:MAX_TEXT_CHARS]
    return [
        ("recall", {"namespace": namespace, "query": _query(rng), "top_k": 100, "method": "memory", **decoding}),
        ("ask", {"namespace": namespace, "question": _query(rng), "top_k": 100, **decoding}),
        ("add", {"namespace": namespace, "text": huge, "store_text": False}),
    ]


async def _hostile(http: httpx.AsyncClient, key: str, namespace: dict, rng: random.Random, deadline: float,
                   tally: Tally) -> None:
    while time.monotonic() < deadline:
        for op, body in hostile_requests(namespace, rng):
            if time.monotonic() >= deadline:
                return
            await _call(http, key, op, body, tally, True)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))], 1)


def summarise(samples: list[Sample], clients: int, seconds: float, elapsed: float) -> dict:
    ok = [s for s in samples if isinstance(s.outcome, int) and 200 <= s.outcome < 300]
    result: dict = {"clients": clients, "seconds": seconds, "requests": len(samples),
                    "req_per_s": round(len(ok) / elapsed, 2) if elapsed > 0 else 0.0,
                    "errors": len(samples) - len(ok),
                    "status_counts": dict(sorted(Counter(str(s.outcome) for s in samples).items()))}
    for op in ("add", "recall"):
        times = [s.ms for s in ok if s.op == op]
        result[f"{op}_p50_ms"], result[f"{op}_p95_ms"] = _percentile(times, 0.5), _percentile(times, 0.95)
    return result


async def _drive(url: str, keys: list[str], namespaces: list[dict], clients: int, hostile: int, seconds: float,
                 share: float, timeout: float, seed: int) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients + hostile + 4)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        # every namespace gets something to find before the clock starts (not counted)
        setup = Tally()
        await asyncio.gather(*(_call(http, keys[i], "add", {"namespace": namespaces[i], **_turn(random.Random(i))},
                                     setup, False) for i in range(clients + hostile)))
        for i in range(clients, clients + hostile):
            body = {"namespace": namespaces[i], "text": HOSTILE_TEXT.format(
                name="Alice", friend="Bob", city="Lima", day=3, price=99) * 60, "store_text": False}
            await _call(http, keys[i], "add", body, setup, False)
        began = time.monotonic()
        deadline = began + seconds
        ordinary = [asyncio.create_task(_ordinary(http, keys[i], namespaces[i], random.Random(seed + i), share,
                                                  deadline, tally)) for i in range(clients)]
        hostiles = [asyncio.create_task(_hostile(http, keys[i], namespaces[i], random.Random(seed + i), deadline,
                                                 tally)) for i in range(clients, clients + hostile)]
        await asyncio.gather(*ordinary)  # each ends when its last request, started before the deadline, does
        elapsed = time.monotonic() - began
        for task in hostiles:  # a hostile request in flight at the deadline is abandoned
            task.cancel()
        await asyncio.gather(*hostiles, return_exceptions=True)
    return tally, elapsed


def run_service_bench(store: str | None = None, clients: int = 16, seconds: float = 60, recall_share: float = 0.8,
                      hostile: int = 0, timeout: float = 120, seed: int = 0,
                      serve_command: str | None = None) -> dict:
    """Start a server on `store` (None: a fresh SQLite file), load it, stop it; the figures as a dict."""
    from r3mem.service.keys import create_api_key
    from r3mem.store.location import open_backend
    from r3mem.store.namespace import Namespace

    with tempfile.TemporaryDirectory(prefix="r3mem-bench-service-") as folder:
        url = store or f"sqlite:///{Path(folder) / 'store.sqlite3'}"
        run = uuid.uuid4().hex[:8]
        backend = open_backend(url)
        try:
            users = [f"bench-{run}-{'h' if i >= clients else 'c'}{i}" for i in range(clients + hostile)]
            keys = [create_api_key(backend, Namespace(user=u), "bench-service") for u in users]
        finally:
            backend.close()
        command = shlex.split(serve_command) if serve_command else [sys.executable, "-m", "r3mem.cli"]
        server = ServeProcess(command, url, Path(folder) / "serve.log")
        startup = server.start()
        load_before = os.getloadavg()
        try:
            tally, elapsed = asyncio.run(_drive(server.url, keys, [{"user": u} for u in users], clients, hostile,
                                                seconds, recall_share, timeout, seed))
        finally:
            load_after = os.getloadavg()
            server.stop()
    result = summarise(tally.ordinary, clients, seconds, elapsed)
    result.update(
        store="postgresql" if url.startswith("postgres") else "sqlite", recall_share=recall_share, hostile=hostile,
        elapsed_s=round(elapsed, 1), startup_s=round(startup, 1),
        load_average_before=[round(x, 2) for x in load_before], load_average_after=[round(x, 2) for x in load_after],
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        first_errors=tally.first_errors,
    )
    if hostile:
        result["hostile_status_counts"] = dict(sorted(Counter(f"{s.op} {s.outcome}" for s in tally.hostile).items()))
        result["hostile_ms"] = [round(s.ms) for s in tally.hostile]
    return result
