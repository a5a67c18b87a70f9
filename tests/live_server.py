"""A live `r3mem serve` on loopback with the tiny model, and clients of it, for the tests that use
the service as its clients do (tests/client/test_client.py, and the `client` variant of `api_store`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.conftest import tiny_base
from tests.faults import Server

from r3mem.client import Client
from r3mem.service.keys import create_api_key
from r3mem.store.location import open_backend
from r3mem.store.namespace import Namespace

OPERATIONS = ("add", "recall", "ask", "get", "list", "update", "delete", "delete_all", "forget", "history", "stats",
              "export", "import_")  # `Client`'s: `MemoryStore`'s methods that have a route


@contextlib.contextmanager
def tiny_server(root: Path, store_url: str) -> Iterator[Server]:
    """`r3mem serve` on the tiny model (saved under `root`) over `store_url`, until the block ends."""
    base = tiny_base()
    base.model.save_pretrained(root / "tiny-model")
    base.tokenizer.save_pretrained(root / "tiny-model")
    running = Server(store_url, root / "tiny-model", root / "server.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def api_key(store_url: str, scope: Namespace) -> str:
    """A new key for the store at `store_url`, scoped to `scope` (a running server sees it at once)."""
    backend = open_backend(store_url)
    try:
        return create_api_key(backend, scope)
    finally:
        backend.close()


class KeyedClient:
    """`Client`s of one server, one API key per namespace, as an application serving several users
    holds a key for each: a call goes out with the key scoped to exactly the namespace it names
    (`import_`, which names none unless given a `scope`, with `home`'s). Keys are created on first
    use and kept in `keys` (shared between tests of one server); the namespaces touched are
    forgotten on `close`, so the next test starts from an empty store.

    Only `Client`'s methods are offered: what has no route (`flush`, `expand`, `rekey`, `chat`) is
    an AttributeError here too.
    """

    def __init__(self, server: Server, keys: Callable[[Namespace], str], home: Namespace) -> None:
        self.server, self.keys, self.home = server, keys, home
        self._clients: dict[Namespace, Client] = {}
        self._lock = threading.Lock()  # tests call from several threads

    def client(self, namespace: Namespace) -> Client:
        with self._lock:
            if namespace not in self._clients:
                self._clients[namespace] = Client(self.server.url, self.keys(namespace))
            return self._clients[namespace]

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in OPERATIONS:
            raise AttributeError(f"the client has no operation {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            namespace = next((a for a in (*args, *kwargs.values()) if isinstance(a, Namespace)), self.home)
            return getattr(self.client(namespace), name)(*args, **kwargs)

        return call

    def close(self) -> None:
        try:
            for namespace, client in self._clients.items():
                client.forget(namespace)
        finally:
            for client in self._clients.values():
                client.close()


class LiveServers:
    """One tiny-model server per backend kind ("sqlite", "postgres"), each over a store of its own,
    started on first use and stopped by `close`; API keys are kept for the servers' lifetime."""

    def __init__(self, root: Path, postgres_schema: Callable[[], contextlib.AbstractContextManager[str]]) -> None:
        self.root, self.postgres_schema = root, postgres_schema
        self._running = contextlib.ExitStack()  # last in, first out: each server stops before its schema goes
        self._servers: dict[str, tuple[Server, str]] = {}
        self._keys: dict[tuple[str, Namespace], str] = {}
        self._lock = threading.Lock()

    def client(self, kind: str, home: Namespace) -> KeyedClient:
        if kind not in self._servers:
            folder = self.root / kind
            folder.mkdir()
            url = (f"sqlite:///{folder / 'store.sqlite3'}" if kind == "sqlite"
                   else self._running.enter_context(self.postgres_schema()))
            self._servers[kind] = (self._running.enter_context(tiny_server(folder, url)), url)
        server, url = self._servers[kind]

        def key(namespace: Namespace) -> str:
            with self._lock:
                if (kind, namespace) not in self._keys:
                    self._keys[kind, namespace] = api_key(url, namespace)
                return self._keys[kind, namespace]

        return KeyedClient(server, key, home)

    def close(self) -> None:
        self._running.close()
