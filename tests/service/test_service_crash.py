"""`r3mem serve` killed with SIGKILL while clients write: no acknowledged record is lost or torn.

A real server process (the tiny model, so it starts fast) takes adds from two client
threads; it is killed at a random moment of the writing, twice, and started again on the
same store. Every add that got a 201 must be there with intact checksums, and every
document that is there must have its whole hierarchy (a write is all or nothing).
`make soak` runs the same cycle 50 times on each store (scripts/soak.py kill).
"""

from __future__ import annotations

import random

import httpx
import pytest
from tests.faults import ALICE, Server, Tally, assert_intact, check_store, kill_during_writes, new_key

# slow: servers SIGKILLed mid-write and restarted
pytestmark = pytest.mark.slow

KILLS = 2


def test_sigkill_during_writes_loses_no_acknowledged_record(store_url, tiny_model_dir, tmp_path):
    key, tally, rng = new_key(store_url), Tally(), random.Random(0)
    server = Server(store_url, tiny_model_dir, tmp_path / "server.log")
    for _ in range(KILLS):
        kill_during_writes(server, key, tally, delay=rng.uniform(0.0, 0.5))
        assert server.proc.returncode == -9

    server.start()  # the service comes back on the same store
    try:
        report = check_store(store_url, tally.acked)
        assert_intact(report)
        r = httpx.get(f"{server.url}/v1/stats", params={"user": ALICE.user}, headers={"X-API-Key": key}, timeout=30)
        assert r.status_code == 200 and r.json()["records"] == report["records"]
    finally:
        server.stop()
