"""The routes: each checks the caller's key and namespace, then makes one `MemoryStore` call.

Calls that touch the model go through the `ModelWorker` (one thread, in order); plain
row operations run on the server's thread pool. A namespace outside the key's scope is
403; a record id outside the request's namespace is 404, exactly like a missing id, so
a caller learns nothing about other namespaces.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from r3mem.errors import InvalidInput
from r3mem.service.errors import NamespaceForbidden
from r3mem.service.keys import authenticate
from r3mem.service.schemas import (
    AddRequest,
    AnswerOut,
    AskRequest,
    DeletedCountOut,
    DeletedIdsOut,
    ErrorOut,
    EventOut,
    ExportRequest,
    ForgottenOut,
    HealthOut,
    HistoryOut,
    HitOut,
    HitsOut,
    ImportedOut,
    Level,
    RecallRequest,
    RecordOut,
    RecordsOut,
    StatsOut,
    UpdateRequest,
)
from r3mem.service.worker import ModelWorker
from r3mem.store import MemoryStore, Namespace
from r3mem.store.backend import ApiKey
from r3mem.store.filters import RecallFilter
from r3mem.store.memory_store import DOCUMENT_LEVELS, MAX_PAGE
from r3mem.store.namespace import ID_PATTERN
from r3mem.store.recall import MODEL_METHODS

ARCHIVE_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")
_ERRORS = {status: {"model": ErrorOut, "description": why} for status, why in (
    (401, "no API key, or an unknown one"), (403, "the namespace lies outside the key's scope"),
    (404, "no such record in this namespace"), (409, "records made by another checkpoint"),
    (413, "request body too large, or the request would cost more than max_request_tokens"),
    (415, "the body is not sent as JSON"), (422, "invalid input"),
    (429, "this key's rate limit is used up (Retry-After says when to retry)"),
    (500, "a stored record is corrupt (names it)"),
    (503, "store unavailable, model busy, or the request ran past request_timeout (Retry-After)"),
)}
_ARCHIVE = {"content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}, "required": True}

health = APIRouter()
router = APIRouter(prefix="/v1", responses=_ERRORS)  # type: ignore[arg-type]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <key>`")


def _store(request: Request) -> MemoryStore:
    return request.app.state.store


def _worker(request: Request) -> ModelWorker:
    return request.app.state.worker


Store = Annotated[MemoryStore, Depends(_store)]
Worker = Annotated[ModelWorker, Depends(_worker)]


def caller(request: Request, store: Store, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
           header: Annotated[str | None, Depends(_header)]) -> ApiKey:
    """The stored key the request presents, in either header (401 when there is none), counted
    against its rate limits (429 with Retry-After once one is used up)."""
    key = authenticate(store.backend, bearer.credentials if bearer is not None else header)
    request.app.state.limiter.hit(key.key_hash)
    return key


Caller = Annotated[ApiKey, Depends(caller)]


def authorize(key: ApiKey, namespace: Namespace) -> Namespace:
    if not key.scope.contains(namespace):
        raise NamespaceForbidden(f"this API key may touch only {key.scope}, not {namespace}")
    return namespace


def query_namespace(key: Caller, user: Annotated[str | None, Query(max_length=128)] = None,
                    agent: Annotated[str | None, Query(max_length=128)] = None,
                    session: Annotated[str | None, Query(max_length=128)] = None) -> Namespace:
    """The namespace of a GET or DELETE, from its query: at least one of user, agent, session."""
    return authorize(key, Namespace(user=user, agent=agent, session=session))


QueryNamespace = Annotated[Namespace, Depends(query_namespace)]
# Ids have the namespace id pattern (r3mem.store.validation.check_id): anything else cannot name a
# record, and a NUL would reach PostgreSQL as a store error.
RecordId = Annotated[str, Path(max_length=128, pattern=f"^{ID_PATTERN}$", description="a record id")]


@health.get("/healthz")
async def healthz() -> HealthOut:
    """Liveness: the process is up and its model is loaded. Needs no key."""
    return HealthOut(status="ok")


def _turn_texts(messages: list | None) -> tuple[str, ...]:
    """The texts an add of messages embeds for its index rows, to embed with the waiting calls'."""
    from r3mem.store.encoder import message_units  # imports torch, which the service loads with the model

    try:
        return tuple(unit.text for unit in message_units(messages)) if messages is not None else ()
    except InvalidInput:  # the add itself reports it
        return ()


@router.post("/memories", status_code=201)
async def add_memories(body: AddRequest, key: Caller, store: Store, worker: Worker) -> RecordsOut:
    """Compress a text (a document and its paragraphs, sentences, entities) or messages (turns)."""
    namespace = authorize(key, body.namespace.value())
    messages = None if body.messages is None else [m.model_dump() for m in body.messages]
    # with store_text the memory is deferred (written in the background): the call is light
    records = await worker.run(store.add, namespace, text=body.text, messages=messages,
                               metadata=body.metadata, store_text=body.store_text, light=body.store_text,
                               embed=_turn_texts(messages),
                               levels=DOCUMENT_LEVELS if body.levels is None else tuple(body.levels))
    worker.wake_background()
    return RecordsOut(records=[RecordOut.model_validate(r.summary()) for r in records])


@router.get("/memories")
def list_memories(namespace: QueryNamespace, store: Store, level: Level | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=MAX_PAGE)] = 0) -> RecordsOut:
    """Records inside the namespace, oldest first."""
    page = store.list(namespace, level, limit, offset)
    return RecordsOut(records=[RecordOut.model_validate(r.summary()) for r in page])


@router.get("/memories/{record_id}")
def get_memory(record_id: RecordId, namespace: QueryNamespace, store: Store) -> RecordOut:
    return RecordOut(**store.get(record_id, namespace).summary())


@router.patch("/memories/{record_id}")
async def update_memory(record_id: RecordId, body: UpdateRequest, key: Caller, store: Store,
                        worker: Worker) -> RecordOut:
    """New text is re-compressed (on the model thread); new metadata replaces the old."""
    namespace = authorize(key, body.namespace.value())
    run = worker.run if body.text is not None else run_in_threadpool
    record = await run(store.update, record_id, namespace, text=body.text, metadata=body.metadata)
    return RecordOut(**record.summary())


@router.delete("/memories/{record_id}")
def delete_memory(record_id: RecordId, namespace: QueryNamespace, store: Store) -> DeletedIdsOut:
    """Delete the record and every record under it."""
    return DeletedIdsOut(deleted=store.delete(record_id, namespace))


@router.delete("/memories", response_model_exclude_none=True)
def delete_all_memories(
    namespace: QueryNamespace, store: Store,
    forget: Annotated[bool, Query(description="also remove every trace: audit events (an update's keeps the old "
                                  "text), index rows and vectors, and the bytes in the database's files")] = False,
    keys: Annotated[bool, Query(description="with forget: also remove the API keys scoped inside the namespace, "
                                "this request's own key among them")] = False,
) -> DeletedCountOut:
    """Delete every record inside the namespace; with `forget=true`, leave no trace of it."""
    if keys and not forget:
        raise InvalidInput("keys=true goes with forget=true: delete_all keeps the namespace's keys")
    if not forget:
        return DeletedCountOut(deleted=store.delete_all(namespace), forgotten=None)
    counts = store.forget(namespace, keys=keys)
    return DeletedCountOut(deleted=counts["records"], forgotten=ForgottenOut(**counts))


@router.get("/memories/{record_id}/history")
def memory_history(record_id: RecordId, namespace: QueryNamespace, store: Store) -> HistoryOut:
    """The record's audit trail, oldest first; kept after the record is deleted."""
    events = store.history(record_id, namespace)
    return HistoryOut(events=[EventOut.model_validate({"seq": e.seq, "record_id": e.record_id, "op": e.op, "at": e.at,
                                                       **e.namespace.as_dict(), "detail": e.detail})
                              for e in events])


@router.post("/recall")
async def recall(body: RecallRequest, key: Caller, store: Store, worker: Worker) -> HitsOut:
    """The records most relevant to the query, best first."""
    namespace = authorize(key, body.namespace.value())
    filters = RecallFilter.of(body.where, body.since, body.until)
    hits = await worker.run(store.recall, body.query, namespace, top_k=body.top_k, level=body.level,
                            embed=(body.query,), light=body.method not in MODEL_METHODS, method=body.method,
                            decoding=body.decoding(), filters=filters, min_score=body.min_score)
    return HitsOut(hits=[HitOut.model_validate(hit.as_dict()) for hit in hits])


@router.post("/ask")
async def ask(body: AskRequest, key: Caller, store: Store, worker: Worker) -> AnswerOut:
    """Recall, then answer from the recalled records' texts only (grounded), or abstain."""
    namespace = authorize(key, body.namespace.value())
    answer = await worker.run(store.ask, body.question, namespace, embed=(body.question,), top_k=body.top_k,
                              method=body.method, decoding=body.decoding())
    return AnswerOut.model_validate(answer.as_dict())


@router.get("/stats")
def stats(namespace: QueryNamespace, store: Store) -> StatsOut:
    return StatsOut(**store.stats(namespace))


@router.post("/export", response_class=FileResponse, responses={200: {"content": _ARCHIVE["content"]}})
def export(body: ExportRequest, key: Caller, store: Store) -> FileResponse:
    """Every record of the namespace as a checksummed archive (tar.gz), for `/v1/import`."""
    namespace = authorize(key, body.namespace.value())
    folder = tempfile.mkdtemp(prefix="r3mem-export-")
    try:
        path = FilePath(folder) / "export.tar.gz"
        count = store.export(namespace, path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(path, media_type="application/gzip", filename="r3mem-export.tar.gz",
                        headers={"X-R3mem-Records": str(count)},
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


@router.post("/import", openapi_extra={"requestBody": _ARCHIVE},
             responses={415: {"model": ErrorOut, "description": "the body is not sent as an archive type"}})
async def import_archive(
    request: Request, key: Caller, store: Store,
    as_user: Annotated[str | None, Query(max_length=128, description="move every record to this user (agent and "
                                         "session kept) first: a migration, allowed inside the key's scope")] = None,
) -> ImportedOut:
    """Add an exported archive's records, all or none; every one must lie inside the key's scope."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ARCHIVE_TYPES:
        raise HTTPException(415, f"send the archive as the raw body with Content-Type {ARCHIVE_TYPES[0]}")
    with tempfile.TemporaryDirectory(prefix="r3mem-import-") as folder:
        path = FilePath(folder) / "upload.tar.gz"
        with path.open("wb") as upload:
            async for chunk in request.stream():  # the body limit middleware caps the total
                upload.write(chunk)
        # unpacked records may be larger than the gzip upload, but not unboundedly so
        settings = request.app.state.settings
        imported = await run_in_threadpool(store.import_, path, scope=key.scope, as_user=as_user,
                                           max_bytes=4 * settings.max_import_bytes,
                                           max_records=settings.max_import_records)
    return ImportedOut(imported=imported)
