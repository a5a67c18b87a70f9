"""What each remote operation sends and how its answer is read, with no I/O: one definition that
`Client` (blocking) and `AsyncClient` (asyncio) both execute (`r3mem.client.clients`).

Each builder takes exactly the arguments its `MemoryStore` method takes and returns a `Call`: the
HTTP request and the function that turns the response into what the store method returns (records,
hits, events...). Records come back without their tensors, as the HTTP API serves them: `memory`
and `key` are empty, and `model_fingerprint` is unknown ("").
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from r3mem import errors
from r3mem.decode.options import DEFAULT_DECODING, Decoding
from r3mem.store.backend import Event
from r3mem.store.filters import RecallFilter
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record

T = TypeVar("T")
ERROR_HEADER = "X-R3mem-Error"  # the server names the R3MemError class it mapped to a status
RECORDS_HEADER = "X-R3mem-Records"  # an export's record count
# When the server names no class (a validation error, a proxy in between), the status decides.
BY_STATUS: dict[int, type[errors.R3MemError]] = {
    401: errors.AccessDenied, 403: errors.AccessDenied, 404: errors.RecordNotFound, 409: errors.InvalidInput,
    413: errors.InvalidInput, 415: errors.InvalidInput, 422: errors.InvalidInput, 429: errors.StoreError,
    500: errors.StoreError, 503: errors.StoreError,
}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how its successful response becomes the result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self) -> dict[str, Any]:
        """httpx's arguments for the request. A body that JSON cannot carry (an object, a NaN) is
        the caller's InvalidInput, as the local store's checks make it, not a TypeError from httpx."""
        if self.json is None:
            return {"params": self.params, "content": self.content, "headers": self.headers}
        try:  # as httpx encodes a json= body
            body = json.dumps(self.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise errors.InvalidInput(f"the request cannot be sent as JSON: {exc}") from exc
        return {"params": self.params, "content": body.encode(),
                "headers": {**self.headers, "Content-Type": "application/json"}}


def raise_for_error(response: httpx.Response) -> httpx.Response:
    """The response if it succeeded; else the r3mem error the local store would have raised."""
    if response.is_success:
        return response
    try:
        message = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip() or response.reason_phrase
    cls = _error_class(response.headers.get(ERROR_HEADER, ""))
    raise (cls or BY_STATUS.get(response.status_code, errors.R3MemError))(f"{message} (HTTP {response.status_code})")


def _error_class(name: str) -> type[errors.R3MemError] | None:
    """The class the server named, if r3mem.errors has it (a service-only class falls to its base)."""
    cls = getattr(errors, name, None) if name.isidentifier() else None
    return cls if isinstance(cls, type) and issubclass(cls, errors.R3MemError) else None


def _ns(namespace: Namespace) -> dict[str, str]:
    if not isinstance(namespace, Namespace):
        raise errors.InvalidInput("namespace must be a Namespace(user=..., agent=..., session=...)")
    return namespace.set_fields()


def _id(record_id: str) -> str:
    if not isinstance(record_id, str) or not record_id:
        raise errors.RecordNotFound(f"no record {record_id!r}")
    return quote(record_id, safe="")


def record(data: dict) -> Record:
    """A `Record` from the API's record object (no tensors)."""
    return Record(
        id=data["id"], namespace=Namespace(data["user"], data["agent"], data["session"]), level=data["level"],
        parent_id=data["parent_id"], memory=b"", memory_dtype=data["memory_dtype"],
        memory_shape=tuple(data["memory_shape"]), segment_tokens=[data["token_count"]], key=b"", text=data["text"],
        metadata=data["metadata"], model_fingerprint="", checkpoint_fingerprint=data["checkpoint"],
        created_at=data["created_at"], updated_at=data["updated_at"], checksum=data["checksum"],
    )


def _records(response: httpx.Response) -> builtins.list[Record]:
    return [record(r) for r in response.json()["records"]]


def _hit(data: dict):
    from r3mem.store.memory_store import Hit

    return Hit(record(data), data["score"], data["text"] or "", data["text_source"])


def _answer(response: httpx.Response):
    from r3mem.answers import Source
    from r3mem.store.memory_store import Answer

    data = response.json()
    sources = [Source(s["id"], s["text"], tuple(s["span"]) if s["span"] is not None else None)
               for s in data["sources"]]
    return Answer(data["answer"], data["abstained"], data["confidence"], sources, [])


def _event(data: dict) -> Event:
    return Event(data["seq"], data["record_id"], data["op"], data["at"],
                 Namespace(data["user"], data["agent"], data["session"]), data["detail"])


def _reconstructing(decoding: Decoding) -> dict[str, Any]:
    """The request fields that carry `decoding`: one per field of it, named alike."""
    if not isinstance(decoding, Decoding):
        raise errors.InvalidInput(f"decoding must be a Decoding, got {type(decoding).__name__}")
    return asdict(decoding)


# -- the operations, in MemoryStore's order and with its arguments -------------------------------
def add(namespace: Namespace, text: str | None = None, messages: builtins.list | None = None,
        metadata: dict | None = None, store_text: bool = True,
        levels: tuple[str, ...] | None = None) -> Call[builtins.list[Record]]:
    """`levels` None: the store's default, every level of a text's hierarchy."""
    body = {"namespace": _ns(namespace), "text": text, "messages": messages, "metadata": metadata,
            "store_text": store_text, "levels": levels}
    return Call("POST", "/v1/memories", _records, json=body)


def update(record_id: str, namespace: Namespace, text: str | None = None,
           metadata: dict | None = None) -> Call[Record]:
    body = {"namespace": _ns(namespace), "text": text, "metadata": metadata}
    return Call("PATCH", f"/v1/memories/{_id(record_id)}", lambda r: record(r.json()), json=body)


def delete(record_id: str, namespace: Namespace) -> Call[builtins.list[str]]:
    return Call("DELETE", f"/v1/memories/{_id(record_id)}", lambda r: r.json()["deleted"], params=_ns(namespace))


def delete_all(namespace: Namespace) -> Call[int]:
    return Call("DELETE", "/v1/memories", lambda r: r.json()["deleted"], params=_ns(namespace))


def forget(namespace: Namespace, keys: bool = False) -> Call[dict[str, int]]:
    params = {**_ns(namespace), "forget": "true", "keys": "true" if keys else "false"}
    return Call("DELETE", "/v1/memories", lambda r: r.json()["forgotten"], params=params)


def get(record_id: str, namespace: Namespace) -> Call[Record]:
    return Call("GET", f"/v1/memories/{_id(record_id)}", lambda r: record(r.json()), params=_ns(namespace))


def list(namespace: Namespace, level: str | None = None, limit: int = 100,  # noqa: A001 -- MemoryStore.list
         offset: int = 0) -> Call[builtins.list[Record]]:
    params: dict[str, Any] = {**_ns(namespace), "limit": limit, "offset": offset}
    if level is not None:
        params["level"] = level
    return Call("GET", "/v1/memories", _records, params=params)


def history(record_id: str, namespace: Namespace) -> Call[builtins.list[Event]]:
    return Call("GET", f"/v1/memories/{_id(record_id)}/history",
                lambda r: [_event(e) for e in r.json()["events"]], params=_ns(namespace))


def stats(namespace: Namespace) -> Call[dict]:
    return Call("GET", "/v1/stats", lambda r: r.json(), params=_ns(namespace))


def recall(query: str, namespace: Namespace, top_k: int = 5, level: str | None = None, method: str = "fused",
           decoding: Decoding = DEFAULT_DECODING, filters: RecallFilter | None = None,
           min_score: float | None = None) -> Call[builtins.list]:
    body: dict[str, Any] = {"namespace": _ns(namespace), "query": query, "top_k": top_k, "level": level,
                            "method": method, "min_score": min_score, **_reconstructing(decoding)}
    if filters is not None and not filters.empty:
        body.update(where=dict(filters.metadata) or None, since=filters.since, until=filters.until)
    return Call("POST", "/v1/recall", lambda r: [_hit(h) for h in r.json()["hits"]], json=body)


def ask(question: str, namespace: Namespace, top_k: int = 3, method: str = "fused",
        decoding: Decoding = DEFAULT_DECODING) -> Call[Any]:
    body = {"namespace": _ns(namespace), "question": question, "top_k": top_k, "method": method,
            **_reconstructing(decoding)}
    return Call("POST", "/v1/ask", _answer, json=body)


def export(namespace: Namespace, path: str | Path) -> Call[int]:
    def save(response: httpx.Response) -> int:
        Path(path).write_bytes(response.content)
        return int(response.headers.get(RECORDS_HEADER, "0"))

    return Call("POST", "/v1/export", save, json={"namespace": _ns(namespace)})


def import_(path: str | Path, scope: Namespace | None = None, as_user: str | None = None) -> Call[int]:
    """The server keeps every record inside the key's scope; a narrower `scope` is checked here,
    on the archive's records, as the store would."""
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise errors.InvalidInput(f"cannot read the archive {path}: {exc.strerror}") from exc
    if scope is not None:
        _ns(scope)  # a Namespace, else InvalidInput
        _check_scope(path, scope, as_user)
    params = {"as_user": as_user} if as_user is not None else None
    return Call("POST", "/v1/import", lambda r: r.json()["imported"], params=params, content=content,
                headers={"Content-Type": "application/gzip"})


def _check_scope(path: str | Path, scope: Namespace, as_user: str | None) -> None:
    from r3mem.store import archive

    for r in archive.read(Path(path)):
        namespace = Namespace(as_user, r.namespace.agent, r.namespace.session) if as_user else r.namespace
        if not scope.contains(namespace):
            raise errors.InvalidInput(f"a record in the archive lies outside {scope}")
