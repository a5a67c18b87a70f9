"""`r3mem add | recall | ask | get | list | update | delete | forget | history | export | import | stats | rekey |
chat`, `r3mem key create`, `r3mem serve` and `r3mem bench-recall`.

Each command is one `MemoryStore` call. The namespace is `--user/--agent/--session` on
every command; the store is `--store URL`, else `$R3MEM_STORE`, else SQLite under
`$R3MEM_HOME`; with `--url` (or `$R3MEM_URL`) a command is a client of a running `r3mem serve`
(`r3mem.client`, key in `$R3MEM_API_KEY`) and loads no model. Results print as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from r3mem.decode.options import (
    DEFAULT_BEAMS,
    DEFAULT_GUIDANCE,
    DEFAULT_SAMPLES,
    GUIDANCE_HELP,
    MAX_BEAMS,
    MAX_SAMPLES,
    Decoding,
)
from r3mem.errors import InvalidInput

if TYPE_CHECKING:  # the model stack is imported only by commands that load it
    from r3mem.api import R3Mem


def _namespace(args: argparse.Namespace):
    from r3mem.store import Namespace

    return Namespace(user=args.user, agent=args.agent, session=args.session)


def _print(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _metadata(raw: str | None) -> dict | None:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--metadata is not JSON: {exc.msg}") from exc


def _where(pairs: list[str] | None) -> dict:
    """`--where KEY=VALUE` pairs; a VALUE that reads as JSON (1, true, "x") is that, else a string."""
    out: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise InvalidInput(f"--where takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _decoding(args: argparse.Namespace) -> Decoding:
    """The `--beams`, `--samples` and `--guidance` flags as one value, checked (InvalidInput names a bad one)."""
    return Decoding(beams=args.beams, samples=args.samples, guidance=args.guidance)


class StoreCommands:
    """Binds parsed arguments to a store; the model loads only for commands that need it."""

    def __init__(self, load_model: Callable[[argparse.Namespace], R3Mem]) -> None:
        self.load_model = load_model

    def _store(self, args: argparse.Namespace, local_only: str | None = None):
        """The store the command runs on, and its namespace: a `Client` of `r3mem serve` when
        `--url` or `$R3MEM_URL` names one (and `--store` does not), else the store itself."""
        namespace = _namespace(args)  # refuse a bad namespace before opening anything
        url = args.url or (None if args.store else os.environ.get("R3MEM_URL"))
        if url and args.store:
            raise InvalidInput("give --url (a running r3mem serve) or --store (a store to open), not both")
        if url:
            if local_only:
                raise InvalidInput(f"{local_only} runs on a store opened here, not through r3mem serve: "
                                   "give --store instead of --url (or unset R3MEM_URL)")
            from r3mem.client import Client

            return Client(url), namespace
        from r3mem.store import MemoryStore

        return MemoryStore.open(args.store, model=lambda: self.load_model(args), ratio=args.ratio), namespace

    def add(self, args):
        from r3mem.textio import read_text_file

        if args.file:
            text = read_text_file(args.file)
        elif args.text == ["-"]:
            text = sys.stdin.read()
        else:
            text = " ".join(args.text)
        store, ns = self._store(args)
        records = store.add(ns, text=text, metadata=_metadata(args.metadata), store_text=not args.no_text)
        _print({"added": [{"id": r.id, "level": r.level, "parent_id": r.parent_id} for r in records]})

    def recall(self, args):
        from r3mem.store.filters import RecallFilter

        filters = RecallFilter.of(_where(args.where), args.since, args.until)
        decoding = _decoding(args)  # before the store opens and the model loads
        store, ns = self._store(args)
        method = {"method": args.method} if args.method else {}
        hits = store.recall(" ".join(args.query), ns, top_k=args.top_k, level=args.level, decoding=decoding,
                            filters=filters, min_score=args.min_score, **method)
        _print([{"id": h.record.id, "level": h.record.level, "score": round(h.score, 4), "text": h.text,
                 "text_source": h.text_source} for h in hits])

    def ask(self, args):
        decoding = _decoding(args)  # before the store opens and the model loads
        store, ns = self._store(args)
        method = {"method": args.method} if args.method else {}
        answer = store.ask(" ".join(args.question), ns, top_k=args.top_k, decoding=decoding, **method)
        if args.json:
            _print(answer.as_dict())
            return
        from r3mem.answers import describe

        print(describe(answer))

    def get(self, args):
        store, ns = self._store(args)
        _print(store.get(args.id, ns).summary())

    def list(self, args):
        store, ns = self._store(args)
        _print([r.summary() for r in store.list(ns, level=args.level, limit=args.limit, offset=args.offset)])

    def update(self, args):
        store, ns = self._store(args)
        _print(store.update(args.id, ns, text=args.text, metadata=_metadata(args.metadata)).summary())

    def delete(self, args):
        store, ns = self._store(args)
        if args.all == (args.id is not None):
            raise InvalidInput("give a record id, or --all to delete the whole namespace")
        _print({"deleted": store.delete_all(ns) if args.all else store.delete(args.id, ns)})

    def forget(self, args):
        ns = _namespace(args)
        if not args.yes:
            if not sys.stdin.isatty():
                raise InvalidInput(f"forget removes every trace of {ns} for good: pass --yes to confirm "
                                   "(stdin is not a terminal to ask on)")
            print(f"Forget every record of {ns}, its history and index{' and its API keys' if args.keys else ''}? "
                  "This cannot be undone. Type yes: ", end="", file=sys.stderr, flush=True)
            if sys.stdin.readline().strip().lower() != "yes":
                print("r3mem: nothing forgotten", file=sys.stderr)
                return 1
        store, ns = self._store(args)
        _print({"forgotten": store.forget(ns, keys=args.keys)})

    def history(self, args):
        store, ns = self._store(args)
        _print([{"seq": e.seq, "op": e.op, "at": e.at, "detail": e.detail} for e in store.history(args.id, ns)])

    def export(self, args):
        store, ns = self._store(args)
        _print({"exported": store.export(ns, args.path), "path": args.path})

    def import_(self, args):
        if args.as_user is not None:  # the records move to that user, so that is the namespace written
            if args.user not in (None, args.as_user):
                raise InvalidInput(f"--user {args.user} and --as-user {args.as_user} disagree: the records "
                                   "go to --as-user's namespace")
            args.user = args.as_user
        store, ns = self._store(args)
        _print({"imported": store.import_(args.path, scope=ns, as_user=args.as_user)})

    def stats(self, args):
        store, ns = self._store(args)
        _print(store.stats(ns))

    def rekey(self, args):
        store, ns = self._store(args, local_only="rekey")
        _print({"rekeyed": store.rekey(ns)})

    def mcp(self, args):
        from r3mem.mcp_server import create_mcp_server

        store, ns = self._store(args)
        if args.transport == "stdio":  # stdout carries the protocol: nothing else may print there
            create_mcp_server(store, ns).run("stdio")
            return
        from r3mem.mcp_http import MCP_PATH, auth_options, warn_if_exposed

        if not hasattr(store, "backend"):
            raise InvalidInput("the MCP HTTP transport checks API keys in the store: give --store, not --url")
        warn_if_exposed(args.host)
        server = create_mcp_server(store, ns, **auth_options(store.backend, ns, args.host, args.port))
        server.run("streamable-http", host=args.host, port=args.port, streamable_http_path=MCP_PATH)

    def bench_recall(self, args):
        import tempfile
        from pathlib import Path

        from r3mem.eval import bench_recall

        sizes = [int(n) for n in args.sizes.split(",")]
        methods = args.methods.split(",")
        r3 = self.load_model(args)
        results = []
        with tempfile.TemporaryDirectory(prefix="r3mem-bench-") as tmp:
            for url in args.store or [f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"]:
                results.append(bench_recall.run(r3, url, sizes, Path(args.locomo), methods, queries=args.queries))
        print(bench_recall.format_table(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))

    def key_create(self, args):
        from r3mem.service.keys import create_api_key
        from r3mem.store.location import open_backend

        namespace = _namespace(args)
        if args.url:
            raise InvalidInput("keys are created in the store itself: give --store, not --url")
        key = create_api_key(open_backend(args.store), namespace, args.label or "")
        print(key)
        print(f"r3mem: key for {namespace} created; only its hash is stored, so keep it now", file=sys.stderr)

    def serve(self, args):
        from r3mem.service.server import serve
        from r3mem.service.settings import Settings

        # the CLI's loader: the libraries' progress bars would break the one-line error on a bad model
        limit = {} if args.rate_limit is None else \
            {"rate_limit": None if args.rate_limit == "none" else args.rate_limit}
        serve(Settings(store_url=args.store, host=args.host, port=args.port, model=args.model,
                       checkpoint=args.checkpoint, device=args.device, ratio=args.ratio,
                       model_factory=lambda: self.load_model(args), **limit), preload=True)

    def chat(self, args):
        store, ns = self._store(args, local_only="chat")
        interactive = sys.stdin.isatty()
        if interactive:
            print(f"r3mem chat ({ns}); an empty line or Ctrl-D ends it.", file=sys.stderr)
        while True:
            if interactive:
                print("you> ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line.strip():
                return
            answer = store.chat(line.strip(), ns, top_k=args.top_k)
            print(f"assistant> {answer.answer}", flush=True)


def _namespace_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="namespace: user id")
    p.add_argument("--agent", help="namespace: agent id")
    p.add_argument("--session", help="namespace: session id")
    p.add_argument("--store", help="store URL: sqlite:///PATH or postgresql://... (default: $R3MEM_STORE, "
                                   "else $R3MEM_HOME/store.sqlite3)")
    p.add_argument("--url", help="run the command through a running `r3mem serve` at this URL, with the key in "
                                 "$R3MEM_API_KEY (default: $R3MEM_URL, unless --store is given)")
    p.add_argument("--ratio", type=float, default=4, help="compression ratio for new records (default 4)")


def register(sub: argparse._SubParsersAction, load_model, model_args: Callable) -> None:
    """Add the store commands to the `r3mem` parser."""
    cmds = StoreCommands(load_model)

    def command(name: str, func, help_text: str, needs_model: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        _namespace_args(p)
        if needs_model:
            model_args(p)
        p.set_defaults(func=lambda a: func(a) or 0)
        return p

    p = command("add", cmds.add, "remember a text (compressed into a hierarchy of records)", True)
    p.add_argument("text", nargs="*", help="the text ('-' reads stdin)")
    p.add_argument("--file", help="read the text from this UTF-8 file")
    p.add_argument("--metadata", help="a JSON object stored with every record")
    p.add_argument("--no-text", action="store_true", help="keep the memory only; recall reconstructs the text")
    for name, func, help_text in (("recall", cmds.recall, "records most relevant to a query"),
                                  ("ask", cmds.ask, "answer a question from recalled records")):
        p = command(name, func, help_text, True)
        p.add_argument("query" if name == "recall" else "question", nargs="+")
        p.add_argument("--top-k", type=int, default=5 if name == "recall" else 3)
        # no choices here: the store checks the name, and importing its list would load the model stack
        p.add_argument("--method", help="how records are ranked: fused (the default), bm25, dense, bm25_dense, "
                                        "memory, key or hybrid (r3mem.store.recall)")
        p.add_argument("--beams", type=int, default=DEFAULT_BEAMS,
                       help=f"beam width for memory-only records' reconstructions (1 greedy, at most {MAX_BEAMS}; "
                            f"default {DEFAULT_BEAMS})")
        p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                       help="samples drawn beside the beams for memory-only records, the candidate re-compressing "
                            f"nearest the memory kept (0-{MAX_SAMPLES}; default {DEFAULT_SAMPLES}: the top beam)")
        p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                       help=f"memory-only records' reconstructions: {GUIDANCE_HELP}")
        if name == "ask":
            p.add_argument("--json", action="store_true",
                           help="print {answer, abstained, confidence, sources: [{id, text, span}]}")
        if name == "recall":
            p.add_argument("--level", help="only records of this level")
            p.add_argument("--where", action="append", metavar="KEY=VALUE",
                           help="only records whose metadata KEY equals VALUE (repeatable)")
            p.add_argument("--since", type=float, help="only records created at or after this Unix time")
            p.add_argument("--until", type=float, help="only records created before this Unix time")
            p.add_argument("--min-score", type=float,
                           help="drop hits scored below this (fused scores estimate P(evidence), from 0 to 1)")
    p = command("get", cmds.get, "show one record")
    p.add_argument("id")
    p = command("list", cmds.list, "list records, oldest first")
    p.add_argument("--level")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p = command("update", cmds.update, "replace a record's text and/or metadata", True)
    p.add_argument("id")
    p.add_argument("--text")
    p.add_argument("--metadata")
    p = command("delete", cmds.delete, "delete a record (and its children), or --all of the namespace")
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true")
    p = command("forget", cmds.forget, "remove every trace of the namespace: records, history, index (asks first)")
    p.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    p.add_argument("--keys", action="store_true", help="also remove the API keys scoped inside the namespace")
    p = command("history", cmds.history, "every change to a record")
    p.add_argument("id")
    p = command("export", cmds.export, "write the namespace to a checksummed archive")
    p.add_argument("path")
    p = command("import", cmds.import_, "add an archive's records (all or none) within the namespace")
    p.add_argument("path")
    p.add_argument("--as-user", metavar="USER", help="move every record to this user first (agent and session kept): "
                                                     "a migration between users")
    command("stats", cmds.stats, "record counts and bytes")
    command("rekey", cmds.rekey, "rewrite the namespace's retrieval keys after the checkpoint's key changes")
    p = command("key", cmds.key_create, "create an API key for the service, scoped to the namespace")
    p.add_argument("action", choices=("create",))
    p.add_argument("--label", help="a note to tell keys apart")
    p = sub.add_parser("serve", help="the HTTP API (loopback unless --host says otherwise)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--store", help="store URL (default: $R3MEM_STORE, else $R3MEM_HOME/store.sqlite3)")
    p.add_argument("--ratio", type=float, default=4)
    p.add_argument("--rate-limit", metavar="LIMITS",
                   help="per API key, e.g. '5/second;300/minute;10000/day' (a daily window is a quota); 'none' "
                        "turns it off (default: 100/second;3000/minute; docs/deployment.md)")
    model_args(p)
    p.set_defaults(func=lambda a: cmds.serve(a) or 0)
    p = sub.add_parser("bench-recall", help="recall latency at 1k, 10k, 100k records (README figures)")
    p.add_argument("--store", action="append", help="store URL to measure (repeatable; default: a temp SQLite)")
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--methods", default="fused,bm25,dense",
                   help="comma-separated recall methods; each row says whether its method is the default")
    p.add_argument("--queries", type=int, default=10, help="timed recalls per size and method")
    p.add_argument("--locomo", default="../shared/data/locomo/locomo_dev.json")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--ratio", type=float, default=4)
    model_args(p)
    p.set_defaults(func=lambda a: cmds.bench_recall(a) or 0)
    p = command("mcp", cmds.mcp, "the memory as MCP tools for agents (stdio; --transport http for streamable HTTP)",
                True)
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                   help="stdio (default): for a desktop agent that starts r3mem mcp itself; http: streamable HTTP "
                        "at http://HOST:PORT/mcp, each request with an API key (r3mem key create)")
    p.add_argument("--host", default="127.0.0.1", help="with --transport http (default: loopback)")
    p.add_argument("--port", type=int, default=8766, help="with --transport http (default 8766)")
    p = command("chat", cmds.chat, "an assistant that remembers across runs (reads stdin)", True)
    p.add_argument("--top-k", type=int, default=3)
