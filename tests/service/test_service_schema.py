"""The HTTP API against its own OpenAPI schema: whatever schemathesis sends to any operation,
the answer is never a 5xx and is one the schema documents (status code, content type, body
and headers). The schema is the contract clients are generated from, so a gap is a bug.

Every request carries alice's key, and most are steered into her namespace and onto her real
record ids; otherwise nearly every case would stop at 403 or 404 and test little else.
"""

from __future__ import annotations

import zlib

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.conftest import TINY_MEMORY, tiny_base

from r3mem.api import R3Mem
from r3mem.service import Settings, create_api_key, create_app
from r3mem.store import MemoryStore, Namespace
from r3mem.store.location import open_backend

# slow: schemathesis fuzzes every operation of the service
pytestmark = pytest.mark.slow

ALICE = Namespace(user="alice")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
EXAMPLES_PER_OPERATION = 60  # fuzzing cases; the coverage phase adds its own, and the file stays under a minute

# The schema needs neither a store nor a model, so it is read at collection (schemathesis's
# lazy `from_fixture` loader does not run under pytest 9); requests go to the app in `served`.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
schemathesis.serializer.alias("application/gzip", "application/octet-stream")  # /v1/import: raw bytes
SCHEMA.config.generation.update(max_examples=EXAMPLES_PER_OPERATION)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(app with its lifespan running, its store, alice's auth header)."""
    tiny = R3Mem.from_base(tiny_base(), device="cpu", config=TINY_MEMORY)
    store = MemoryStore(open_backend(f"sqlite:///{tmp_path_factory.mktemp('schema') / 's.sqlite3'}"), tiny)
    auth = {"Authorization": f"Bearer {create_api_key(store.backend, ALICE, 'alice')}"}
    app = create_app(Settings(rate_limit=None), store=store)  # fuzzing is a flood by design
    with TestClient(app):  # runs the lifespan: the store and the model worker are on app.state
        yield app, store, auth
    store.close()


def _alice_ids(store: MemoryStore) -> list[str]:
    """Her current record ids; a generated DELETE may have removed them all, so add some back."""
    ids = [r.id for r in store.list(ALICE, limit=50)]
    return ids or [r.id for r in store.add(ALICE, text="Alice keeps a green teapot.\n\nHer cat is Miso.")]


def _steer(case, store: MemoryStore) -> None:
    """Two cases in three go to alice's namespace: one of those exactly to `user=alice` and, on a
    record route, to one of her record ids; the other keeps its generated agent and session."""
    roll = zlib.crc32(repr((case.method, case.path, case.body, case.query, case.path_parameters)).encode()) % 3
    if roll == 0:
        return
    if isinstance(case.body, dict) and isinstance(case.body.get("namespace"), dict):
        case.body["namespace"] = {"user": "alice"} if roll == 1 else {**case.body["namespace"], "user": "alice"}
        if case.body.get("text") is not None and case.body.get("messages") is not None:
            del case.body["messages"]  # an add takes one or the other
    if isinstance(case.query, dict) and case.path.startswith("/v1") and case.method in ("GET", "DELETE"):
        case.query.pop("keys", None)  # forget=true&keys=true would delete alice's key, and every later case be 401
        if roll == 1:
            case.query.pop("agent", None)
            case.query.pop("session", None)
        case.query["user"] = "alice"
    if isinstance(case.path_parameters, dict) and "record_id" in case.path_parameters and roll == 1:
        ids = _alice_ids(store)
        case.path_parameters["record_id"] = ids[len(repr(case.body)) % len(ids)]


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_every_operation_answers_as_its_schema_says(case, served, cases_tried):
    app, store, auth = served
    cases_tried[0] += 1
    _steer(case, store)
    case.call_and_validate(app=app, headers=auth, checks=CHECKS)
