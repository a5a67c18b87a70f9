"""`MemoryStore`: persistent, namespaced, reversible memory (mem0's surface, r3mem underneath).

Every operation takes one `Namespace`. Records outside it are invisible: a `get`,
`delete` or `history` of another namespace's id raises `RecordNotFound`, exactly as
for an id that never existed. The model is loaded only by operations that need it
(add, recall, ask, update of text), so listing, deleting and exporting are quick.
"""

from __future__ import annotations

import builtins  # `MemoryStore.list` shadows the builtin in annotations below it
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from r3mem import bounds
from r3mem.decode.options import DEFAULT_DECODING, Decoding
from r3mem.errors import CheckpointMismatch, InvalidInput, RecordNotFound
from r3mem.store import archive, importing
from r3mem.store.backend import Event, StoreBackend
from r3mem.store.dense import DenseIndex, top
from r3mem.store.embedder import Embedder, default_embedder
from r3mem.store.filters import RecallFilter
from r3mem.store.fusion import DEFAULT_FUSION, Fusion, fuse, rrf
from r3mem.store.location import open_backend
from r3mem.store.namespace import Namespace
from r3mem.store.recall import (
    DEFAULT_METHOD,
    EXACT_LIMIT,
    MODEL_METHODS,
    SHORTLIST,
    KeyCache,
    by_key,
    check_method,
    query_likelihood,
)
from r3mem.store.record import LEVELS, Record, encode_key
from r3mem.store.validation import check_metadata, check_text

if TYPE_CHECKING:  # the model stack (torch) is imported by the operations that run the model
    from r3mem.answers import Source
    from r3mem.api import R3Mem
    from r3mem.store.encoder import RecordEncoder
    from r3mem.verify import Reconstruction

DOCUMENT_LEVELS = ("document", "paragraph", "sentence", "entity")
MAX_PAGE = (1 << 63) - 1  # the largest LIMIT and OFFSET both SQLite and PostgreSQL accept
# Text records added before their memory is written, at most: an add then costs the text, its
# index row and its vector (tens of ms), and one add in this many pays the batch's compression.
DEFAULT_MEMORY_BATCH = 16


@dataclass(frozen=True)
class Hit:
    """One recalled record: its score, and its text as stored or as reconstructed from memory."""

    record: Record
    score: float
    text: str
    text_source: str  # "stored" | "reconstructed" | "none" (asked not to reconstruct)

    def as_dict(self) -> dict:
        return {**self.record.summary(), "score": self.score, "text": self.text, "text_source": self.text_source}


@dataclass(frozen=True)
class Answer:
    """A grounded answer (`r3mem.answers`): None and `abstained` when no recalled record supports
    one, and then `sources` are the closest records, without spans. `hits` are all recalled."""

    answer: str | None
    abstained: bool
    confidence: float
    sources: list[Source]
    hits: list[Hit]

    @property
    def record_ids(self) -> list[str]:
        return [hit.record.id for hit in self.hits]

    def as_dict(self) -> dict:
        """The public shape, as `r3mem ask --json` prints it and `/v1/ask` returns it."""
        return {"answer": self.answer, "abstained": self.abstained, "confidence": self.confidence,
                "sources": [source.as_dict() for source in self.sources]}


def _default_model() -> R3Mem:
    from r3mem.api import R3Mem

    return R3Mem.load()


def entries(records: list[Record], embedder: Embedder, r3: R3Mem | None):
    """`r3mem.store.indexing.entries`, imported on first use: it imports torch, which listing does not need."""
    from r3mem.store.indexing import entries as make

    return make(records, embedder, r3)


def _embedder_factory(embedder: Embedder | Callable[[], Embedder] | None) -> Callable[[], Embedder]:
    """A factory for the store's embedder: the default MiniLM, a given embedder, or a given factory."""
    if embedder is None:
        return default_embedder
    if hasattr(embedder, "encode"):
        given = cast(Embedder, embedder)
        return lambda: given
    return cast(Callable[[], Embedder], embedder)


class MemoryStore:
    """Add, recall, ask, get, update, delete, history, export, import and stats, per namespace."""

    def __init__(self, backend: StoreBackend, model: R3Mem | Callable[[], R3Mem] | None = None,
                 ratio: float = 4, memory_dtype: str = "float16",
                 embedder: Embedder | Callable[[], Embedder] | None = None, fusion: Fusion = DEFAULT_FUSION,
                 memory_batch: int = DEFAULT_MEMORY_BATCH) -> None:
        """`embedder` (or a factory for one) writes and compares dense vectors (default: the
        packaged MiniLM, loaded on first use); `fusion` weighs the default recall. A text record's
        memory is written in batches of `memory_batch` (0: by every add itself); see `flush`."""
        if not isinstance(memory_batch, int) or not 0 <= memory_batch <= 1024:
            raise InvalidInput(f"memory_batch must be an integer from 0 to 1024, got {memory_batch!r}")
        self.memory_batch = memory_batch
        self._pending = 0  # records this store added pending since its last flush
        # False: an add never flushes; the owner writes pending memories itself (`flush_some`), as
        # the service's model worker does between interactive calls.
        self.auto_flush = True
        self.backend = backend
        self._model = model
        self._encoder: RecordEncoder | None = None
        self.ratio, self.memory_dtype = ratio, memory_dtype
        self.keys = KeyCache(backend)
        self.dense = DenseIndex(backend, _embedder_factory(embedder))
        self.fusion = fusion
        self._indexed: set[Namespace] = set()  # namespaces whose unindexed records were looked for

    @classmethod
    def open(cls, url: str | None = None, model: R3Mem | Callable[[], R3Mem] | None = None, **kwargs) -> MemoryStore:
        """Open (creating if needed) the store at `url`; default: SQLite under `$R3MEM_HOME`."""
        return cls(open_backend(url), model if model is not None else _default_model, **kwargs)

    @property
    def encoder(self) -> RecordEncoder:
        if self._encoder is None:
            from r3mem.api import R3Mem
            from r3mem.store.encoder import RecordEncoder

            r3 = self._model() if callable(self._model) and not isinstance(self._model, R3Mem) else self._model
            if r3 is None:
                raise InvalidInput("this store was opened without a model; add, recall and ask need one")
            # keys are written lazily (by the first recall that reads them) unless the fusion weighs them
            self._encoder = RecordEncoder(r3, self.ratio, self.memory_dtype, lazy_keys=not self.fusion.key)
        return self._encoder

    def close(self) -> None:
        """Write what this store left pending (if its model is loaded), then close the backend."""
        if self._pending and self._encoder is not None:
            self.flush()
        self.backend.close()

    def flush(self, namespace: Namespace | None = None) -> int:
        """Write the memories of pending text records (inside `namespace`, else all); returns how many.

        Recall by memory, export and close call it; a record that stays pending (the process died)
        keeps its text and index row, so nothing is lost, and the next flush writes its memory."""
        written = 0
        while batch := self.backend.pending(namespace, limit=max(self.memory_batch, 64)):
            done = self.backend.set_memories(self.encoder.complete(batch))
            written += done
            if not done:  # every one changed meanwhile: leave them to the next flush
                break
        if namespace is None:
            self._pending = 0
        return written

    def flush_some(self, limit: int) -> int:
        """Write the memories of at most `limit` pending records (any namespace); returns how many.
        A small `limit` keeps one call short, so a caller can interleave other work between calls."""
        batch = self.backend.pending(None, limit=limit)
        done = self.backend.set_memories(self.encoder.complete(batch)) if batch else 0
        self._pending = max(0, self._pending - done) if batch else 0
        return done

    # -- writes ---------------------------------------------------------------------
    def add(self, namespace: Namespace, text: str | None = None, messages: list | None = None,
            metadata: dict | None = None, store_text: bool = True,
            levels: tuple[str, ...] = DOCUMENT_LEVELS) -> list[Record]:
        """Compress `text` (as a hierarchy) or `messages` (as turns) into records, atomically."""
        from r3mem.store.encoder import document_units, message_units

        metadata = check_metadata(metadata)
        if (text is None) == (messages is None):
            raise InvalidInput("give exactly one of text or messages")
        if text is not None:
            bad = set(levels) - set(DOCUMENT_LEVELS)
            if bad or not levels:
                raise InvalidInput(f"levels must be a non-empty subset of {', '.join(DOCUMENT_LEVELS)}")
            units = document_units(check_text(text), tuple(levels))
        elif messages is not None:
            units = message_units(messages)
            for unit in units:
                check_text(unit.text, "message")
        defer = self.memory_batch > 0 and store_text
        # every unit is compressed (now or deferred, one record at a time) and embedded for the index
        if bounds.active():  # unit by unit: a text far over the cap is refused after its first unit
            for unit in units:
                tokens = len(self.encoder.r3.tokenize(unit.text))
                bounds.charge(tokens + min(tokens, 256), f"compressing and indexing one {unit.level} record")
        records = self.encoder.records(units, namespace, metadata, store_text, defer=defer)
        self.backend.insert(records, index=self._entries(records))
        if defer:
            self._pending += len(records)
            if self.auto_flush and self._pending >= self.memory_batch:
                self.flush()
        return records

    def _entries(self, records: builtins.list[Record]):
        """Index entries for new records, embedded in one batch (memory-only ones read back by the model)."""
        return entries(records, self.dense.embedder, self.encoder.r3)

    def update(self, record_id: str, namespace: Namespace, text: str | None = None,
               metadata: dict | None = None) -> Record:
        """Replace a record's text (re-compressed, with a new subtree) and/or its metadata."""
        from r3mem.store.encoder import Unit, document_units

        old = self.get(record_id, namespace)
        if text is None and metadata is None:
            raise InvalidInput("nothing to update: give text and/or metadata")
        new_metadata = check_metadata(metadata) if metadata is not None else old.metadata
        detail: dict = {"metadata_before": old.metadata, "metadata_after": new_metadata}
        descendants = None
        if text is None:
            new = old.changed(metadata=new_metadata)
        else:
            check_text(text)
            # a document gets a new hierarchy; any other record is one unit, and its old children go
            units = document_units(text, DOCUMENT_LEVELS) if old.level == "document" \
                else [Unit(old.level, text, None, {})]
            fresh = self.encoder.records(units, namespace=old.namespace, metadata=new_metadata,
                                         store_text=old.text is not None)
            root, descendants = fresh[0], fresh[1:]
            for child in descendants:
                if child.parent_id == root.id:
                    child.parent_id = old.id
                    child.checksum = child.compute_checksum()
            new = root.changed(id=old.id, level=old.level, parent_id=old.parent_id, created_at=old.created_at)
            detail.update(text_before=old.text, text_after=new.text)
        index = self._entries([new, *descendants]) if text is not None and descendants is not None else None
        self.backend.replace(new, detail, descendants, index)
        return new

    def delete(self, record_id: str, namespace: Namespace) -> list[str]:
        """Delete a record and everything under it; returns the deleted ids."""
        ids = self.backend.delete(record_id, namespace)
        if not ids:
            raise RecordNotFound(f"no record {record_id} in {namespace}")
        return ids

    def delete_all(self, namespace: Namespace) -> int:
        return self.backend.delete_all(namespace)

    def forget(self, namespace: Namespace, keys: bool = False) -> dict[str, int]:
        """Remove every trace of `namespace`: its records, their index rows and vectors, its audit
        events (an update's keeps the old text), and with `keys` the API keys scoped inside it; then
        compact the database so none of their bytes remain in its files (`r3mem.store.forget`).
        Unlike `delete_all`, nothing is logged. Returns counts: records, index_rows, events, api_keys."""
        if not isinstance(namespace, Namespace):
            raise InvalidInput("forget needs a Namespace (user, agent and/or session)")
        return self.backend.forget(namespace, keys=keys)

    # -- reads ----------------------------------------------------------------------
    def get(self, record_id: str, namespace: Namespace) -> Record:
        record = self.backend.get(record_id, namespace) if isinstance(record_id, str) else None
        if record is None:
            raise RecordNotFound(f"no record {record_id} in {namespace}")
        record.verify()
        return record

    def list(self, namespace: Namespace, level: str | None = None, limit: int = 100, offset: int = 0) -> list[Record]:
        self._check_level(level)
        # Past the databases' 64-bit integers a page is a server error, not an empty page.
        if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_PAGE:
            raise InvalidInput(f"limit must be from 1 and offset from 0, both at most {MAX_PAGE}; "
                               f"got limit {limit}, offset {offset}")
        return self.backend.find(namespace, level, limit, offset)

    def history(self, record_id: str, namespace: Namespace) -> builtins.list[Event]:
        events = self.backend.history(record_id, namespace)
        if not events:
            raise RecordNotFound(f"no record {record_id} in {namespace}")
        return events

    def stats(self, namespace: Namespace) -> dict:
        return self.backend.stats(namespace)

    def text_of(self, record: Record, decoding: Decoding = DEFAULT_DECODING) -> tuple[str, str]:
        """The record's stored text, else its reconstruction from memory alone, decoded as `decoding`
        says (`r3mem.decode.options.Decoding`)."""
        if record.text is not None:
            return record.text, "stored"
        memory = self.encoder.as_memory(record)
        return self.encoder.r3.expand(memory, decoding=decoding), "reconstructed"

    def expand(self, record_id: str, namespace: Namespace,
               decoding: Decoding = DEFAULT_DECODING) -> Reconstruction:
        """Regenerate a record's text from its memory alone, with a verdict per segment: whether it is
        the stored text token for token when the record kept its text, else None (a store record
        keeps no source digests, so a memory-only record's reconstruction cannot be checked)."""
        from r3mem.verify import Reconstruction

        _check_decoding(decoding)
        record = self.get(record_id, namespace)
        if record.pending:
            self.flush(namespace)
            record = self.get(record_id, namespace)
        r3 = self.encoder.r3
        parts = r3.expand_ids(self.encoder.as_memory(record), decoding=decoding)
        verified: builtins.list[bool | None] = [None] * len(parts)
        if record.text is not None:
            source, start = r3.tokenize(record.text), 0
            for i, (part, n) in enumerate(zip(parts, record.segment_tokens, strict=True)):
                verified[i] = list(part) == source[start : start + n]
                start += n
        return Reconstruction(r3.detokenize([t for part in parts for t in part]), list(range(len(parts))), verified)

    @staticmethod
    def _check_level(level: str | None) -> None:
        if level is not None and level not in LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(LEVELS)}, got {level!r}")

    def recall(self, query: str, namespace: Namespace, top_k: int = 5, level: str | None = None,
               method: str = DEFAULT_METHOD, decoding: Decoding = DEFAULT_DECODING,
               filters: RecallFilter | None = None, min_score: float | None = None,
               reconstruct: bool = True) -> builtins.list[Hit]:
        """The `top_k` records inside `namespace` most relevant to `query`, best first.

        `method` is one of `r3mem.store.recall.METHODS` (default `fused`). `filters` narrows by
        metadata and creation time inside the database query; `min_score` drops hits scored below
        it (the `fused` score estimates P(evidence), so a query nothing stored answers gets []).
        `decoding` only matters for memory-only records, whose text is reconstructed: fewer
        beams answer sooner (1 is greedy, several times faster), more slip less; samples add
        candidates chosen among by cycle consistency, at about a greedy expansion's cost each;
        guidance holds each reconstructed chunk to its memory slot (0 turns it off);
        `reconstruct=False` returns memory-only hits with no text (ids and scores only, no generation).
        """
        check_text(query, "query")
        self._check_level(level)
        check_method(method)
        _check_decoding(decoding)
        if not isinstance(top_k, int) or not 1 <= top_k <= 100:
            raise InvalidInput("top_k must be an integer from 1 to 100")
        if filters is not None and not isinstance(filters, RecallFilter):
            raise InvalidInput("filters must be a RecallFilter (RecallFilter.of(metadata=..., since=..., until=...))")
        if min_score is not None and not isinstance(min_score, int | float):
            raise InvalidInput("min_score must be a number")
        ranked = self._ranked(query, namespace, level, filters, method, top_k)
        if min_score is not None:
            ranked = [(i, score) for i, score in ranked if score >= min_score]
        records = {r.id: r for r in self.backend.fetch([i for i, _ in ranked[:top_k]], namespace)}
        if reconstruct:  # the whole reconstruction's cost, before any of it runs (`r3mem.bounds`)
            dear = [r for r in records.values() if r.text is None]
            beams, samples = decoding.beams, decoding.samples
            bounds.charge(sum(sum(r.segment_tokens) for r in dear) * beams * (1 + samples),
                          f"reconstructing {len(dear)} memory-only hit(s) at {beams} beam(s) and {samples} sample(s)")
        hits = []
        for record_id, score in ranked[:top_k]:
            if record_id in records:
                records[record_id].verify()  # every method: a corrupt record is refused, never returned
                text, source = self.text_of(records[record_id], decoding) \
                    if reconstruct or records[record_id].text is not None else ("", "none")
                hits.append(Hit(records[record_id], float(score), text, source))
        return hits

    def _ranked(self, query: str, namespace: Namespace, level: str | None, flt: RecallFilter | None,
                method: str, top_k: int) -> builtins.list[tuple[str, float]]:
        if method in MODEL_METHODS:
            self.flush(namespace)
            self._refuse_foreign(namespace)
            ranked = self._rank_by_memory(query, namespace, level, flt, top_k, exact=method != "key")
            if method == "hybrid":
                lexical = self.backend.lexical(query, namespace, level, flt, SHORTLIST)
                ranked = rrf([i for i, _ in ranked], [i for i, _ in lexical])
            return ranked[:top_k]
        self._index_stragglers(namespace)
        if method == "bm25":
            return self.backend.lexical(query, namespace, level, flt, top_k)
        depth = max(top_k, self.fusion.depth)
        ids, cosines = self.dense.similarities(query, namespace, level, flt)
        dense = top(ids, cosines, depth if method != "dense" else top_k)
        if method == "dense":
            return dense
        lexical = self.backend.lexical(query, namespace, level, flt, depth)
        if method == "bm25_dense":
            return rrf([i for i, _ in lexical], [i for i, _ in dense])[:top_k]
        keys = self._key_similarities(query, namespace, level, flt) if self.fusion.key else None
        return fuse(self.fusion, ids, cosines, lexical, dense, keys)[:top_k]

    def _key_similarities(self, query: str, namespace: Namespace, level: str | None,
                          flt: RecallFilter | None) -> dict[str, float]:
        """The retrieval key's cosine per record (`_key_scores`), after pending memories are written."""
        self.flush(namespace)
        self._refuse_foreign(namespace)
        ids, similarity = self._key_scores(query, namespace, level, flt)
        return dict(zip(ids, similarity.tolist(), strict=True))

    def _key_scores(self, query: str, namespace: Namespace, level: str | None,
                    flt: RecallFilter | None) -> tuple[builtins.list[str], np.ndarray]:
        """(ids, cosine) of the query's key against every record's. Keys another key head wrote are
        rewritten first (`rekey`); a memory-only record whose key is still stale (no text to key)
        scores 0."""
        query_key = self.encoder.query_key(query)
        ids, keys = self.keys.get(namespace, level, flt)
        if ids and keys.shape[1] != len(query_key):
            self.rekey(namespace)
            ids, keys = self.keys.get(namespace, level, flt)
        if not ids:
            return [], np.zeros(0, np.float32)
        width = keys.shape[1]
        keys = np.pad(keys, ((0, 0), (0, max(0, len(query_key) - width))))[:, : len(query_key)]
        similarity = by_key(keys, query_key)
        if width != len(query_key):  # stale keys were padded to the widest; only current ones count
            widths = {r.id: len(r.key) // 2 for r in self.backend.fetch(ids, namespace)}
            similarity = np.where([widths.get(i) == len(query_key) for i in ids], similarity, 0.0)
        return ids, similarity

    def rekey(self, namespace: Namespace) -> int:
        """Rewrite the retrieval key of every text record in `namespace` whose key the loaded
        checkpoint's key head did not write (after the checkpoint or its key changes); returns
        how many were rewritten. Memory-only records keep their key: there is no text to key."""
        self.flush(namespace)
        width = len(self.encoder.query_key("?"))
        stale = [r for r in self.backend.find(namespace) if r.text is not None and len(r.key) // 2 != width]
        written = 0
        for start in range(0, len(stale), 256):
            batch = stale[start : start + 256]
            keys = self.encoder.record_keys([r.text or "" for r in batch],
                                            [self.encoder.as_memory(r) for r in batch])
            written += self.backend.set_keys([replace(r, key=encode_key(k), checksum="")
                                              for r, k in zip(batch, keys, strict=True)])
        return written

    def _index_stragglers(self, namespace: Namespace) -> None:
        """Index records written without an index row (memory-only ones imported, or from before
        the index), once per namespace and store; the model loads only if one needs reading back."""
        if namespace in self._indexed:
            return
        for batch in self.backend.unindexed(namespace):
            r3 = self.encoder.r3 if any(r.text is None for r in batch) else None
            self.backend.add_index(entries(batch, self.dense.embedder, r3))
        self._indexed.add(namespace)

    def _refuse_foreign(self, namespace: Namespace) -> None:
        r3 = self.encoder.r3
        foreign = self.backend.count_foreign(namespace, r3.base.fingerprint, r3.checkpoint_fingerprint)
        if foreign:
            raise CheckpointMismatch(
                f"{foreign} record(s) in {namespace} were made by another model or checkpoint than the loaded "
                f"one ({r3.checkpoint_fingerprint}); load that checkpoint, or delete and re-add them"
            )

    def _rank_by_memory(self, query: str, namespace: Namespace, level: str | None, flt: RecallFilter | None,
                        top_k: int, exact: bool) -> builtins.list[tuple[str, float]]:
        ids, similarity = self._key_scores(query, namespace, level, flt)
        if not ids:
            return []
        if not exact:
            order = np.argsort(-similarity, kind="stable")[:top_k]
            return [(ids[i], float(similarity[i])) for i in order]
        order = np.argsort(-similarity, kind="stable")[: max(SHORTLIST, top_k)] if len(ids) > EXACT_LIMIT \
            else np.arange(len(ids))
        candidates = self.backend.fetch([ids[i] for i in order], namespace)
        if bounds.active():  # one pass over each candidate's memory slots and the query
            q = len(self.encoder.r3.tokenize(query))
            bounds.charge(sum((r.memory_shape[1] if len(r.memory_shape) > 1 else 0) + q for r in candidates),
                          f"scoring {len(candidates)} record(s) by query likelihood")
        scores = query_likelihood(self.encoder, [r.memory_tensor()[-1] for r in candidates], query)
        ranked = sorted(zip((r.id for r in candidates), scores, strict=True), key=lambda kv: -kv[1])
        return ranked[: max(top_k, SHORTLIST)]

    def ask(self, question: str, namespace: Namespace, top_k: int = 3, method: str = DEFAULT_METHOD,
            decoding: Decoding = DEFAULT_DECODING) -> Answer:
        """Answer from the recalled records' texts only, or abstain (`r3mem.answers`)."""
        from r3mem.answers import answer_question, evidence_of

        check_text(question, "question")
        hits = self.recall(question, namespace, top_k=top_k, method=method, decoding=decoding)
        got = answer_question(self.encoder.r3, question, evidence_of(hits))
        return Answer(got.answer, got.abstained, got.confidence, got.sources, hits)

    def chat(self, message: str, namespace: Namespace, top_k: int = 3) -> Answer:
        """One assistant turn that remembers: a question is answered from the recalled records (never
        the assistant's own earlier replies) in the second person, or the reply says nothing
        remembered answers it; anything else is acknowledged. Both turns are then stored."""
        from r3mem.answers import answer_question, evidence_of, phrasing

        check_text(message, "message")
        hits: builtins.list[Hit] = []
        got = answer_question(self.encoder.r3, message, [])  # abstains: nothing recalled yet
        if phrasing.is_question(message) and self.backend.find(namespace, limit=1):
            hits = [h for h in self.recall(message, namespace, top_k=top_k + 3)
                    if not h.text.startswith("assistant:")][:top_k]
            got = answer_question(self.encoder.r3, message, evidence_of(hits))
        text = phrasing.reply(got) if phrasing.is_question(message) else phrasing.ACKNOWLEDGE
        self.add(namespace, messages=[{"role": "user", "content": message}, {"role": "assistant", "content": text}])
        return Answer(text, got.abstained, got.confidence, got.sources, hits)

    # -- portability ----------------------------------------------------------------
    def export(self, namespace: Namespace, path: str | Path) -> int:
        """Write every record of `namespace`, as stored, to a checksummed archive; returns the count
        (a record whose memory is still pending goes as it is, and the importing store writes it)."""
        return archive.write(self.backend.find(namespace), namespace, Path(path))

    def import_(self, path: str | Path, scope: Namespace | None = None, as_user: str | None = None,
                max_bytes: int = archive.MAX_ARCHIVE_BYTES, max_records: int = archive.MAX_RECORDS) -> int:
        """Add an archive's records (all or none); with `scope`, every record must lie inside it.
        `as_user` moves every record to that user (agent and session kept) before the scope is
        checked: a migration between users, allowed where the caller may write.

        Each record passes the checks an add applies (`r3mem.store.importing`); `max_bytes` bounds
        both the archive file and its unpacked records, `max_records` their number.
        """
        records = archive.read(Path(path), max_bytes=max_bytes, max_records=max_records)
        if as_user is not None:  # a new namespace changes each record's checksum, computed afresh
            records = [replace(r, namespace=replace(r.namespace, user=as_user), checksum="") for r in records]
        loaded = self._encoder.r3 if self._encoder is not None else None  # else memory-only ones wait for recall
        records = importing.admit(records, self.backend, scope, loaded)
        self.backend.insert(records, op="import", index=entries(records, self.dense.embedder, loaded))
        return len(records)


def _check_decoding(decoding: object) -> None:
    """Refuse anything but a `Decoding` before any work is done (it checked its own fields when made)."""
    if not isinstance(decoding, Decoding):
        raise InvalidInput(f"decoding must be a Decoding, got {type(decoding).__name__}")
