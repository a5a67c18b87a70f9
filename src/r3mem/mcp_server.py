"""`r3mem mcp`: the store as Model Context Protocol tools, on the official SDK's `MCPServer`.

Tool names are those agents already know from hosted memories (`add_memory`, `search_memories`,
`delete_all_memories`...), plus r3mem's `expand_memory`. Every tool acts inside one namespace fixed
when the server starts (`--user/--agent/--session`); no tool takes a namespace argument, so an
agent cannot widen what it reaches, whatever it sends. The memory is a local `MemoryStore` or a
`r3mem.client.Client` of a running `r3mem serve`: both have the same methods.

An r3mem error reaches the agent as the tool's error result (one line, the store's own words);
calls are serialised, since the model runs one call at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from r3mem import __version__
from r3mem.decode.options import Decoding
from r3mem.errors import InvalidInput, R3MemError
from r3mem.store.filters import RecallFilter
from r3mem.store.namespace import Namespace

if TYPE_CHECKING:
    from r3mem.store.memory_store import MemoryStore

T = TypeVar("T")
TOOLS = ("add_memory", "search_memories", "get_memory", "list_memories", "update_memory", "delete_memory",
         "delete_all_memories", "memory_history", "ask_memory", "expand_memory")
Level = Literal["document", "paragraph", "sentence", "entity", "turn"]
Method = Literal["fused", "bm25", "dense", "bm25_dense", "memory", "key", "hybrid"]
MemoryId = Annotated[str, Field(description="a memory's id, as add_memory, search_memories or list_memories gave it",
                                min_length=1, max_length=128)]
_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
INSTRUCTIONS = """Long-term memory for this user, kept by r3mem. Store facts worth remembering with
add_memory; before answering from memory, search_memories (or ask_memory for a grounded answer that
abstains when nothing stored supports one). Ids from search and list results name memories for
get_memory, update_memory, delete_memory, memory_history and expand_memory."""


def _record(record) -> dict[str, Any]:
    return record.summary()


class MemoryTools:
    """The tools, each a method acting on `memory` inside `namespace`; `create_mcp_server` registers them."""

    def __init__(self, memory: MemoryStore | Any, namespace: Namespace) -> None:
        if not isinstance(namespace, Namespace):
            raise InvalidInput("the MCP server needs a namespace: --user, --agent and/or --session")
        self.memory, self.namespace = memory, namespace
        self._lock = threading.Lock()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One store call at a time; an r3mem error becomes the tool's error, in the store's words."""
        try:
            with self._lock:
                return fn(*args, **kwargs)
        except R3MemError as exc:
            raise ToolError(" ".join(str(exc).split())) from exc

    def add_memory(
        self,
        text: Annotated[str, Field(description="what to remember, in plain words (at most 200,000 characters)")],
        metadata: Annotated[dict[str, Any] | None, Field(description="any JSON object stored with the memory, "
                                                         "e.g. {\"topic\": \"travel\"}; search filters on it")] = None,
    ) -> dict[str, Any]:
        """Remember a text: it is stored, compressed, as a document and its paragraphs, sentences and
        entities, each a memory search can find. Returns the ids of what was stored."""
        records = self._call(self.memory.add, self.namespace, text=text, metadata=metadata)
        return {"added": [{"id": r.id, "level": r.level, "parent_id": r.parent_id} for r in records]}

    def search_memories(
        self,
        query: Annotated[str, Field(description="what to look for, in words")],
        top_k: Annotated[int, Field(description="how many memories to return", ge=1, le=100)] = 5,
        level: Annotated[Level | None, Field(description="only memories of this level")] = None,
        method: Annotated[Method, Field(description="ranking: fused (default) combines the lexical index and "
                                                    "sentence embeddings")] = "fused",
        where: Annotated[dict[str, str | int | float | bool] | None,
                         Field(description="only memories whose metadata holds each of these key: value")] = None,
        min_score: Annotated[float | None, Field(description="drop memories scored below this; fused scores "
                                                            "estimate the chance a memory is relevant")] = None,
    ) -> dict[str, Any]:
        """The stored memories most relevant to a query, best first, each with its text and score."""
        hits = self._call(self.memory.recall, query, self.namespace, top_k=top_k, level=level, method=method,
                          filters=RecallFilter.of(where) if where else None, min_score=min_score)
        return {"results": [{**_record(h.record), "score": h.score, "text": h.text, "text_source": h.text_source}
                            for h in hits]}

    def get_memory(self, memory_id: MemoryId) -> dict[str, Any]:
        """One memory by its id: its text, level, metadata and times."""
        return _record(self._call(self.memory.get, memory_id, self.namespace))

    def list_memories(
        self,
        level: Annotated[Level | None, Field(description="only memories of this level")] = None,
        limit: Annotated[int, Field(description="at most this many", ge=1, le=1000)] = 100,
        offset: Annotated[int, Field(description="skip this many first (for the next page)", ge=0)] = 0,
    ) -> dict[str, Any]:
        """Stored memories, oldest first, a page at a time."""
        page = self._call(self.memory.list, self.namespace, level=level, limit=limit, offset=offset)
        return {"memories": [_record(r) for r in page]}

    def update_memory(
        self,
        memory_id: MemoryId,
        text: Annotated[str | None, Field(description="the new text (the memory is compressed again)")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="new metadata, replacing the old whole")] = None,
    ) -> dict[str, Any]:
        """Replace a memory's text and/or metadata; its history keeps what it said before."""
        return _record(self._call(self.memory.update, memory_id, self.namespace, text=text, metadata=metadata))

    def delete_memory(self, memory_id: MemoryId) -> dict[str, Any]:
        """Delete a memory and every memory split from it (a document's paragraphs...)."""
        return {"deleted": self._call(self.memory.delete, memory_id, self.namespace)}

    def delete_all_memories(self) -> dict[str, Any]:
        """Delete every memory of this user (this server's namespace only). Their history is kept."""
        return {"deleted": self._call(self.memory.delete_all, self.namespace)}

    def memory_history(self, memory_id: MemoryId) -> dict[str, Any]:
        """Every change to a memory, oldest first (an update keeps the text before and after)."""
        events = self._call(self.memory.history, memory_id, self.namespace)
        return {"events": [{"seq": e.seq, "op": e.op, "at": e.at, "detail": e.detail} for e in events]}

    def ask_memory(
        self,
        question: Annotated[str, Field(description="a question the stored memories may answer")],
        top_k: Annotated[int, Field(description="how many recalled memories the answer may use", ge=1, le=100)] = 3,
    ) -> dict[str, Any]:
        """Answer from the stored memories only, naming the memory and span that support the answer;
        abstains (answer null) when nothing stored supports one, naming the closest memories."""
        return self._call(self.memory.ask, question, self.namespace, top_k=top_k).as_dict()

    def expand_memory(
        self,
        memory_id: MemoryId,
        beams: Annotated[int, Field(description="beam width: 1 is greedy and fastest, more slip less", ge=1,
                                    le=16)] = 4,
    ) -> dict[str, Any]:
        """Regenerate a memory's text from its compressed form alone, and say whether it is verified:
        checked token for token against the stored text when the memory kept it (a memory stored
        without text cannot be checked, and its regenerated text is the model's best reading)."""
        if not hasattr(self.memory, "expand"):
            raise ToolError("expand_memory needs a store opened here: start r3mem mcp with --store, not --url")
        got = self._call(self.memory.expand, memory_id, self.namespace, decoding=Decoding(beams=beams))
        verified = None if any(v is None for v in got.verified) else got.exact
        verdict = "not verifiable: the memory kept no text to compare with" if verified is None else got.summary()
        return {"id": memory_id, "text": got.text, "verified": verified, "verdict": verdict}


ANNOTATIONS = {name: _READ for name in TOOLS} | {"add_memory": _WRITE, "update_memory": _WRITE,
                                                 "delete_memory": _DELETE, "delete_all_memories": _DELETE}


def create_mcp_server(memory: MemoryStore | Any, namespace: Namespace, **options: Any) -> MCPServer:
    """An MCP server whose tools act on `memory` (a `MemoryStore` or a `Client`) inside `namespace`;
    `options` go to `MCPServer` (`r3mem.mcp_http.auth_options` for HTTP)."""
    tools = MemoryTools(memory, namespace)
    server = MCPServer("r3mem", version=__version__, instructions=INSTRUCTIONS, **options)
    for name in TOOLS:
        server.add_tool(getattr(tools, name), annotations=ANNOTATIONS[name], structured_output=True)
    return server
