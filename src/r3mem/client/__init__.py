"""A Python client for `r3mem serve`: `Client` and `AsyncClient`, with `MemoryStore`'s methods.

    from r3mem.client import Client
    from r3mem.store import Namespace

    memory = Client("http://127.0.0.1:8765", api_key="r3m_...")  # was: MemoryStore.open()
    memory.add(Namespace(user="alice"), text="Alice keeps a green teapot.")
    hits = memory.recall("teapot", Namespace(user="alice"))
"""

from r3mem.client.clients import AsyncClient, Client

__all__ = ["AsyncClient", "Client"]
