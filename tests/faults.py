"""Fault injection shared by the fast fault tests and `scripts/soak.py`.

A real `r3mem serve` child process, client threads that remember which adds the service
acknowledged, the faults themselves (SIGKILL, a PostgreSQL restart, a full disk), and the
one check every fault ends with, `check_store`: each acknowledged add is present whole
with intact checksums, and nothing unacknowledged is half there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from r3mem.errors import CorruptRecord
from r3mem.service.keys import create_api_key
from r3mem.store.location import open_backend
from r3mem.store.namespace import Namespace

ROOT = Path(__file__).resolve().parents[1]
PG_SCRIPT = ROOT / "scripts" / "postgres-test-server.sh"
ALICE = Namespace(user="alice")
# Every add has the same shape, so every add's hierarchy has the same number of records.
TEXT = "Note {n}: Alice paid 12 dollars in Paris on 3 May.\n\nShe left at noon. Bob stayed."
STORE_DOWN = "the memory store is unavailable or failed; the server log has the cause"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`r3mem serve` as a child process on a free loopback port; its stderr goes to `log_path`."""

    def __init__(self, store_url: str, model_dir: Path | str | None, log_path: Path, port: int | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.store_url, self.model_dir, self.log_path = store_url, model_dir, Path(log_path)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> float:
        """Start and wait until /healthz answers; return the seconds that took."""
        argv = [sys.executable, "-m", "r3mem.cli", "serve", "--port", str(self.port), "--store", self.store_url,
                *(["--model", str(self.model_dir)] if self.model_dir else []), *self.extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                time.sleep(0.2)
        self.kill()
        raise AssertionError(f"server did not come up in {timeout} s: {self.log()[-2000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Tally:
    """What the clients saw: acknowledged id groups and every response, with its time."""

    acked: list[list[str]] = field(default_factory=list)
    events: list[tuple[float, str, int | str]] = field(default_factory=list)  # (time, op, status or exception)
    bodies: dict[int, str] = field(default_factory=dict)  # first error body per status
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, op: str, outcome: int | str, body: str = "") -> None:
        with self.lock:
            self.events.append((time.monotonic(), op, outcome))
            if isinstance(outcome, int) and outcome >= 400:
                self.bodies.setdefault(outcome, body)

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter:
        with self.lock:
            return Counter(outcome for at, _, outcome in self.events if since <= at <= until)


class Clients:
    """`count` threads adding to alice's namespace (and, with `reads`, asking for her stats).

    Each thread stops at `stop()`, after `max_requests`, or, unless `persist`, on the first
    connection error (the server died: that add was never acknowledged).
    """

    def __init__(self, url: str, key: str, tally: Tally, count: int = 2, reads: bool = False,
                 persist: bool = False, max_requests: int = 5000) -> None:
        self.url, self.key, self.tally = url, key, tally
        self.reads, self.persist, self.max_requests = reads, persist, max_requests
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _run(self, index: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as client:
            for n in range(self.max_requests):
                if self._stop.is_set():
                    return
                reading = self.reads and n % 2 == 1
                try:
                    if reading:
                        r = client.get("/v1/stats", params={"user": ALICE.user})
                    else:
                        r = client.post("/v1/memories", json={"namespace": ALICE.as_dict(),
                                                             "text": TEXT.format(n=f"{index}-{n}")})
                except httpx.HTTPError as exc:
                    self.tally.note("stats" if reading else "add", type(exc).__name__)
                    if not self.persist:
                        return
                    time.sleep(0.05)
                    continue
                self.tally.note("stats" if reading else "add", r.status_code, "" if r.is_success else r.text)
                if r.status_code == 201:
                    with self.tally.lock:
                        self.tally.acked.append([rec["id"] for rec in r.json()["records"]])
                elif not r.is_success:
                    time.sleep(0.05)  # an outage: don't spin

    def wait_for_acks(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.tally.acked) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.tally.acked)} adds acknowledged in {timeout} s")
            time.sleep(0.02)


def postgres_base_url() -> str:
    """The test cluster's URL: `$R3MEM_TEST_POSTGRES_URL`, else the script's (started if need be)."""
    return os.environ.get("R3MEM_TEST_POSTGRES_URL") or postgres("start")


@contextlib.contextmanager
def fresh_store(kind: str, directory: Path, pg_base: str | None = None) -> Iterator[str]:
    """An empty store URL: an SQLite file in `directory`, or a PostgreSQL schema of its own (dropped after)."""
    if kind == "sqlite":
        yield f"sqlite:///{Path(directory) / f'store-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    if kind != "postgres":
        raise ValueError(f"store kind must be sqlite or postgres, got {kind!r}")
    import psycopg

    base = pg_base or postgres_base_url()
    schema = f"fault_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def new_key(store_url: str) -> str:
    backend = open_backend(store_url)
    try:
        return create_api_key(backend, ALICE, "faults")
    finally:
        backend.close()


def check_store(store_url: str, acked: list[list[str]], namespace: Namespace = ALICE) -> dict:
    """Count what a fault broke: lost (acknowledged but missing), corrupt, torn (part of an add)."""
    backend = open_backend(store_url)
    try:
        stored = {r.id: r for r in backend.find(namespace)}
    finally:
        backend.close()
    lost = sum(1 for ids in acked for i in ids if i not in stored)
    corrupt = []
    for record in stored.values():
        try:
            record.verify()
        except CorruptRecord:
            corrupt.append(record.id)
    children: dict[str, list[str]] = {}
    for record in stored.values():
        if record.parent_id is not None:
            children.setdefault(record.parent_id, []).append(record.id)
    # an acknowledged add is exactly its records; one never acknowledged (the reply was lost)
    # must still be whole: no orphans, and as many records as an acknowledged add of its shape
    sizes = {len(ids) for ids in acked}
    acked_roots = {ids[0]: set(ids) for ids in acked}
    orphans = sum(1 for r in stored.values() if r.parent_id is not None and r.parent_id not in stored)
    torn = orphans + sum(
        1 for r in stored.values() if r.parent_id is None and (
            _family(r.id, children) != acked_roots[r.id] if r.id in acked_roots
            else len(_family(r.id, children)) not in sizes))
    return {"acknowledged_adds": len(acked), "records": len(stored), "lost": lost, "corrupt": len(corrupt),
            "torn": torn, "corrupt_ids": corrupt}


def _family(root: str, children: dict[str, list[str]]) -> set[str]:
    family, todo = set(), [root]
    while todo:
        node = todo.pop()
        family.add(node)
        todo.extend(children.get(node, []))
    return family


def assert_intact(report: dict) -> None:
    assert report["acknowledged_adds"] > 0, "no add was acknowledged: the fault proved nothing"
    assert (report["lost"], report["corrupt"], report["torn"]) == (0, 0, 0), report


# -- faults -------------------------------------------------------------------------------
def kill_during_writes(server: Server, key: str, tally: Tally, delay: float, clients: int = 2) -> float:
    """Start the server, SIGKILL it `delay` s after its first acknowledged add; return the start time."""
    started = server.start()
    with Clients(server.url, key, tally, count=clients) as writers:
        writers.wait_for_acks(len(tally.acked) + 1)
        time.sleep(delay)
        server.kill()
    return started


def postgres(action: str) -> str:
    """`scripts/postgres-test-server.sh start|stop`: the test cluster's own mechanism."""
    proc = subprocess.run([str(PG_SCRIPT), action], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"postgres-test-server.sh {action} failed: {proc.stderr[-1000:]}")
    return proc.stdout.strip()


def restart_postgres_under_load(server: Server, key: str, tally: Tally, outage: float = 2.0,
                                clients: int = 3) -> dict:
    """Stop the PostgreSQL server for `outage` s while clients add and read, then start it again.

    The service must answer 503 with a clear body during the outage and serve again after it
    without being restarted; returns what the clients saw in each phase.
    """
    with Clients(server.url, key, tally, count=clients, reads=True, persist=True) as load:
        load.wait_for_acks(len(tally.acked) + 3)
        try:
            down = time.monotonic()
            postgres("stop")
            time.sleep(outage)
        finally:
            postgres("start")  # other tests need it: start it whatever happened
        up = time.monotonic()
        deadline = up + 60
        recovered = None
        while recovered is None and time.monotonic() < deadline:
            with tally.lock:
                recovered = next((at for at, op, outcome in tally.events
                                  if at > up and op == "add" and outcome == 201), None)
            time.sleep(0.02)
        time.sleep(0.5)  # a little load after the recovery too
    return {"outage_s": round(up - down, 2), "during_outage": dict(tally.statuses(down, up)),
            "recover_s": None if recovered is None else round(recovered - up, 2),
            "after_recovery": dict(tally.statuses(recovered or float("inf"))),
            "body_503": tally.bodies.get(503, ""), "server_alive": server.alive()}


@contextlib.contextmanager
def small_filesystem(size_mb: int = 2) -> Iterator[Path]:
    """A fresh filesystem of `size_mb` MB: tmpfs, else a loop-mounted ext4 image (both need root).

    Raises PermissionError, with why, when neither can be mounted.
    """
    top = Path(tempfile.mkdtemp(prefix="r3mem-full-"))
    mount_point = top / "fs"
    mount_point.mkdir()
    attempts = [["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(mount_point)]]
    image = top / "fs.img"
    attempts.append(["sh", "-c", f"truncate -s {size_mb + 2}M {image} && mkfs.ext4 -q -m 0 {image} "
                                 f"&& mount -o loop {image} {mount_point}"])
    why = []
    for argv in attempts:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            break
        why.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    else:
        subprocess.run(["rm", "-rf", str(top)], timeout=60)
        raise PermissionError(f"cannot mount a small filesystem (tmpfs: {why[0]}; loop ext4: {why[1]})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=60)
        subprocess.run(["rm", "-rf", str(top)], timeout=60)


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem is full; deleting it frees the space again."""
    path = directory / f"filler-{uuid.uuid4().hex[:8]}"
    with path.open("wb", buffering=0) as fh:
        for chunk in (1 << 16, 1 << 12, 1 << 9):  # big blocks, then the last few bytes
            for _ in range(100_000):  # bounded: far beyond any small filesystem
                try:
                    fh.write(b"\0" * chunk)
                except OSError:
                    break
    return path
