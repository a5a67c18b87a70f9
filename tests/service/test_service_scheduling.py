"""The model worker's scheduling and per-request bounds (issue 32): interactive calls before
background work, one batched embedding for waiting recalls, deadlines, cost caps, and cheap
calls run between a dear call's decoding steps. Ordering is asserted, never timed."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from r3mem import bounds
from r3mem.errors import CostTooHigh, DeadlineExceeded
from r3mem.service import Settings, create_api_key, create_app
from r3mem.service.worker import ModelWorker
from r3mem.store import Namespace
from r3mem.store.dense import PrimedEmbedder

ALICE = Namespace(user="alice")


def _blocked(worker: ModelWorker) -> threading.Event:
    """Hold the model thread until the returned event is set."""
    release, started = threading.Event(), threading.Event()
    worker.submit(lambda: (started.set(), release.wait()))
    assert started.wait(5)
    return release


def test_interactive_calls_run_before_background_work():
    order: list[str] = []
    chunks = iter(range(3))

    def background() -> bool:
        order.append("background")
        return next(chunks, None) is not None

    worker = ModelWorker(background=background, idle_after=0, starve_after=60)
    try:
        assert worker.wait_idle(5)  # a fresh worker looks once for work an earlier run left
        order.clear()
        chunks = iter(range(3))
        release = _blocked(worker)
        worker.wake_background()
        futures = [worker.submit(order.append, f"call{i}") for i in range(3)]
        release.set()
        for future in futures:
            future.result(5)
        assert worker.wait_idle(5)
        assert order[:3] == ["call0", "call1", "call2"]
        assert order[3:] == ["background"] * 4  # then it runs, one chunk at a time, until none is left
    finally:
        worker.close()


def test_background_work_is_not_starved_by_sustained_load():
    ran = threading.Event()
    worker = ModelWorker(background=lambda: ran.set() or False, idle_after=60, starve_after=0.0)
    try:
        release = _blocked(worker)
        worker.wake_background()
        futures = [worker.submit(time.sleep, 0) for _ in range(5)]
        release.set()
        assert ran.wait(5)
        for future in futures:
            future.result(5)
    finally:
        worker.close()


def test_waiting_recalls_have_their_queries_embedded_in_one_batch():
    batches: list[list[str]] = []
    worker = ModelWorker(prefetch=batches.append)
    try:
        release = _blocked(worker)
        futures = [worker.submit(lambda: None, embed=(f"q{i}",) * (1 + i % 2)) for i in range(4)]
        release.set()
        for future in futures:
            future.result(5)
        assert batches[0] == ["q0", "q1", "q1", "q2", "q3", "q3"]
    finally:
        worker.close()


def test_texts_that_arrive_while_a_batch_runs_wait_for_one_batch_of_their_own():
    """Under steady load each call used to embed the one or two texts that came in during the last
    call; a call already primed now runs without embedding, so the next batch holds every arrival."""
    batches: list[list[str]] = []
    worker = ModelWorker(prefetch=batches.append)
    try:
        release = _blocked(worker)
        running, go_on = threading.Event(), threading.Event()
        first = worker.submit(lambda: running.set() or go_on.wait(5), embed=("q0",))
        second = worker.submit(lambda: None, embed=("q1",))
        release.set()
        assert running.wait(5)
        later = [worker.submit(lambda: None, embed=(f"q{i}",)) for i in range(2, 5)]
        go_on.set()
        for future in [first, second, *later]:
            future.result(5)
        assert batches == [["q0", "q1"], ["q2", "q3", "q4"]]
    finally:
        worker.close()


class CountingEmbedder:
    name = "counting"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([np.full(3, len(t), np.float32) for t in texts])


def test_primed_texts_are_used_once_and_others_embedded_in_one_call():
    embedder = CountingEmbedder()
    primed = PrimedEmbedder(embedder)
    primed.prime(["a long query", "q", "q"])
    assert embedder.calls == [["q", "a long query"]]  # one batch, shortest first, no duplicate
    assert primed.encode(["q"])[0][0] == 1 and primed.encode(["a long query", "xy"])[:, 0].tolist() == [12, 2]
    assert embedder.calls[1:] == [["xy"]]  # only the text nobody primed
    primed.encode(["q"])  # used up: embedded again
    assert embedder.calls[-1] == ["q"]


def test_a_call_past_its_deadline_while_waiting_is_not_started():
    ran = []
    worker = ModelWorker(timeout=0.05)
    try:
        release = _blocked(worker)
        future = worker.submit(ran.append, 1)
        time.sleep(0.1)
        release.set()
        with pytest.raises(DeadlineExceeded):
            future.result(5)
        assert ran == []
    finally:
        worker.close()


def test_light_calls_run_between_the_decoding_steps_of_a_dear_one():
    order: list[str] = []
    light_queued = threading.Event()

    def dear() -> None:
        steps = bounds.step_processors(resume=lambda: order.append("resume"))
        assert light_queued.wait(5)
        order.append("step 1")
        for step in steps:
            step(None, None)
        order.append("step 2")

    worker = ModelWorker(timeout=60)
    try:
        dear_call = worker.submit(dear)
        time.sleep(0.05)
        cheap = worker.submit(order.append, "light", light=True)
        heavy = worker.submit(order.append, "not light")
        light_queued.set()
        for future in (dear_call, cheap, heavy):
            future.result(5)
        assert order == ["step 1", "light", "resume", "step 2", "not light"]
    finally:
        worker.close()


def test_a_dear_call_advances_however_steady_the_cheap_calls():
    worker = ModelWorker(timeout=60, yield_for=0)
    steps_done = []

    def cheap() -> None:  # each cheap call queues another, as a steady client would
        if len(steps_done) < 3:
            worker.submit(cheap, light=True)

    def dear() -> None:
        worker.submit(cheap, light=True)
        for i in range(3):
            bounds.step()
            steps_done.append(i)

    try:
        assert worker.submit(dear).result(5) is None and steps_done == [0, 1, 2]
    finally:
        worker.close()


def test_a_deadline_stops_decoding_between_steps():
    with bounds.within(bounds.Bounds(deadline=time.monotonic() - 1)):
        steps = bounds.step_processors(resume=lambda: None)
        with pytest.raises(DeadlineExceeded):
            steps[0](None, None)


def test_answer_generation_stops_at_the_deadline_too():
    assert bounds.deadline_processors() == []  # nothing bounded outside the service
    with bounds.within(bounds.Bounds(deadline=time.monotonic() - 1)), pytest.raises(DeadlineExceeded):
        bounds.deadline_processors()[0](None, None)


def test_charge_refuses_past_the_cap_and_names_it():
    with bounds.within(bounds.Bounds(max_tokens=100)):
        bounds.charge(60, "first")
        with pytest.raises(CostTooHigh, match="max_request_tokens=100"):
            bounds.charge(50, "second")
    bounds.charge(10**9, "unbounded outside the service")


def test_service_refuses_a_dear_recall_with_413_before_it_runs(store):
    store.add(ALICE, text="The cat is called Tom. It sleeps all day.", store_text=False)
    app = create_app(Settings(max_request_tokens=64), store=store)
    with TestClient(app) as client:
        alice = {"Authorization": f"Bearer {create_api_key(store.backend, ALICE, 'alice')}"}
        ns = {"namespace": {"user": "alice"}}
        big = client.post("/v1/recall", headers=alice, json={**ns, "query": "cat", "top_k": 5, "beams": 16})
        assert big.status_code == 413 and "max_request_tokens=64" in big.json()["error"]
        small = client.post("/v1/recall", headers=alice, json={**ns, "query": "cat", "top_k": 1, "beams": 1})
        assert small.status_code == 200, small.text
        add = client.post("/v1/memories", headers=alice, json={**ns, "text": "word " * 500})
        assert add.status_code == 413 and "max_request_tokens" in add.json()["error"]


def test_service_answers_503_with_retry_after_past_the_deadline(store):
    store.add(ALICE, text="The cat is called Tom.", store_text=False)
    app = create_app(Settings(request_timeout=1e-6), store=store)
    with TestClient(app) as client:
        alice = {"Authorization": f"Bearer {create_api_key(store.backend, ALICE, 'alice')}"}
        response = client.post("/v1/recall", headers=alice, json={"namespace": {"user": "alice"}, "query": "cat"})
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert "deadline" in response.json()["error"]


def test_acknowledged_adds_get_their_memories_from_the_background(store):
    app = create_app(Settings(), store=store)
    with TestClient(app) as client:
        alice = {"Authorization": f"Bearer {create_api_key(store.backend, ALICE, 'alice')}"}
        ids = []
        for i in range(3):
            response = client.post("/v1/memories", headers=alice, json={
                "namespace": {"user": "alice"}, "messages": [{"role": "user", "content": f"I own {i} cats"}]})
            assert response.status_code == 201
            ids += [r["id"] for r in response.json()["records"]]
        assert app.state.worker.wait_idle(30)
    assert all(not store.get(i, ALICE).pending for i in ids)


def test_worker_run_still_awaits_results_and_errors():
    worker = ModelWorker()

    async def main():
        assert await worker.run(lambda x: x + 1, 1) == 2
        with pytest.raises(ZeroDivisionError):
            await worker.run(lambda: 1 / 0)

    try:
        asyncio.run(main())
    finally:
        worker.close()
