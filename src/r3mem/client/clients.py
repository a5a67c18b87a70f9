"""`Client` and `AsyncClient`: `MemoryStore`'s methods over a running `r3mem serve`.

Every operation is defined once, in `r3mem.client.calls`, as the request it sends and the way its
response is read; `_Operation` binds it to a client, whose `_send` is the only thing that differs
between the two (a blocking or an awaited httpx request). So the two clients cannot drift apart,
and code moves between a local store and a remote one by changing the line that opens it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx

from r3mem.client import calls
from r3mem.client.calls import Call, raise_for_error
from r3mem.errors import InvalidInput, StoreError

P = ParamSpec("P")
T = TypeVar("T")
DEFAULT_TIMEOUT_S = 600.0  # a recall that reconstructs memory-only records may take minutes on a CPU


class _Operation(Generic[P, T]):
    """A `calls` builder as a method: the client sends what the builder returns."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: None, owner: type) -> _Operation[P, T]: ...

    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...

    def __get__(self, client: Any, owner: type) -> Any:
        if client is None:  # looked up on the class (help(), introspection)
            return self
        send = client._send

        @functools.wraps(self.build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return send(self.build(*args, **kwargs))

        return method


class _Operations:
    """The store's methods, shared by both clients (`MemoryStore` documents each)."""

    add = _Operation(calls.add)
    recall = _Operation(calls.recall)
    ask = _Operation(calls.ask)
    get = _Operation(calls.get)
    list = _Operation(calls.list)
    update = _Operation(calls.update)
    delete = _Operation(calls.delete)
    delete_all = _Operation(calls.delete_all)
    forget = _Operation(calls.forget)
    history = _Operation(calls.history)
    stats = _Operation(calls.stats)
    export = _Operation(calls.export)
    import_ = _Operation(calls.import_)

    def __init__(self, url: str | None, api_key: str | None) -> None:
        url = url or os.environ.get("R3MEM_URL")
        api_key = api_key or os.environ.get("R3MEM_API_KEY")
        if not url or not url.startswith(("http://", "https://")):
            raise InvalidInput(f"the service URL must be http(s)://HOST:PORT (or set R3MEM_URL), got {url!r}")
        if not api_key:
            raise InvalidInput("an API key is required: pass api_key, or set R3MEM_API_KEY (`r3mem key create`)")
        self.url = url.rstrip("/")
        self._options: dict[str, Any] = {"base_url": self.url, "headers": {"Authorization": f"Bearer {api_key}"}}

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """A service that cannot be reached is an unavailable store, as a local one would be."""
        try:
            yield
        except httpx.TransportError as exc:
            raise StoreError(f"cannot reach r3mem serve at {self.url}: {exc}") from exc


class Client(_Operations):
    """`MemoryStore`'s methods, each one blocking HTTP request to `url` with `api_key`.

    `url` and `api_key` default to `$R3MEM_URL` and `$R3MEM_API_KEY`. Errors are the store's own
    classes (`RecordNotFound`, `InvalidInput`, `AccessDenied`, `StoreError`...).
    """

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT_S, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, api_key)
        self._http = httpx.Client(timeout=timeout, transport=transport, **self._options)

    def _send(self, call: Call[T]) -> T:
        with self._reaching():
            response = self._http.request(call.method, call.path, **call.request())
        return call.parse(raise_for_error(response))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Operations):
    """`Client`, with every method a coroutine (`await client.recall(...)`)."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT_S,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, api_key)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, **self._options)

    async def _send(self, call: Call[T]) -> T:
        with self._reaching():
            response = await self._http.request(call.method, call.path, **call.request())
        return call.parse(raise_for_error(response))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
