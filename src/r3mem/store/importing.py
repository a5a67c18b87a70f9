"""Admitting an archive's records: every one checked as if it were added, none crossing a namespace.

An archive is the caller's word only: its checksums are unkeyed, so anything in it may be
crafted. `admit` therefore checks each record with the store's own validation
(`r3mem.store.validation`), keeps each one inside the importer's scope, and lets a record hang
under a parent only in its own namespace (in the archive, or already stored there). Ids held
by another namespace are treated exactly as free ids are: the record is stored under a fresh
id, so the answer to an import never says whether someone else holds an id.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from r3mem.errors import DuplicateRecord, InvalidInput
from r3mem.store.backend import StoreBackend
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record, new_id
from r3mem.store.validation import check_record

if TYPE_CHECKING:
    from r3mem.api import R3Mem


def _check(record: Record, r3: R3Mem | None) -> None:
    """The store's checks; against the loaded model's sizes when the record says that model wrote it."""
    same_model = r3 is not None and (record.model_fingerprint, record.checkpoint_fingerprint) == (
        r3.base.fingerprint, r3.checkpoint_fingerprint)
    if r3 is None or not same_model:
        check_record(record)
        return
    check_record(record, hidden_size=r3.hidden_size, max_memory_tokens=r3.config.max_memory_tokens,
                 segment_len=r3.config.segment_len)


def admit(records: list[Record], backend: StoreBackend, scope: Namespace | None,
          r3: R3Mem | None = None) -> list[Record]:
    """The records to insert, checked (InvalidInput, or DuplicateRecord for ids already in `scope`)."""
    ids = [r.id for r in records]
    for record in records:
        _check(record, r3)
    if len(set(ids)) != len(ids):
        raise InvalidInput("the archive holds the same record id more than once")
    if scope is not None:
        outside = [r.id for r in records if not scope.contains(r.namespace)]
        if outside:
            raise InvalidInput(f"{len(outside)} record(s) in the archive lie outside {scope}")
    present = backend.existing(ids)
    # Only the caller's own ids are reported; without a scope every namespace is the caller's.
    visible = {r.id for r in backend.fetch(present, scope)} if scope is not None else set(present)
    if visible:
        first = next(i for i in ids if i in visible)
        raise DuplicateRecord(f"{len(visible)} record(s) of the archive are already in the store "
                              f"(e.g. {first}); delete them first or import elsewhere")
    _check_parents(records, backend)
    renamed = {i: new_id() for i in present}  # held by another namespace: as good as free
    if not renamed:
        return records
    return [replace(r, id=renamed.get(r.id, r.id), parent_id=renamed.get(r.parent_id or "", r.parent_id),
                    checksum="") for r in records]


def _check_parents(records: list[Record], backend: StoreBackend) -> None:
    """A parent must share the child's exact namespace: in the archive, or already stored.

    A parent in another namespace is refused with the same words as a missing one."""
    in_archive = {r.id: r.namespace for r in records}
    _refuse_cycles({r.id: r.parent_id for r in records})
    for record in records:
        parent = record.parent_id
        if parent is None or in_archive.get(parent) == record.namespace:
            continue
        stored = backend.get(parent, record.namespace) if parent not in in_archive else None
        if stored is None or stored.namespace != record.namespace:
            raise InvalidInput(f"record {record.id}: its parent {parent} is neither in the archive nor "
                               f"stored in {record.namespace}")


def _refuse_cycles(parents: dict[str, str | None]) -> None:
    """A record cannot be its own ancestor: deleting one of a cycle would never end."""
    done: set[str] = set()
    for start in parents:
        seen: set[str] = set()
        node: str | None = start
        while node is not None and node in parents and node not in done:
            if node in seen:
                raise InvalidInput(f"record {node}: its parents lead back to itself")
            seen.add(node)
            node = parents[node]
        done |= seen
