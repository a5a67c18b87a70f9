"""`RecallFilter`: which records a recall may return, applied inside the database query.

Namespaces already narrow by user, agent and session, and `level` by level; a filter adds
metadata equality (every given key must hold exactly the given JSON scalar) and a creation-time
window `since <= created_at < until` (Unix seconds). Each backend spells the metadata test in its
own SQL (`SQLBackend._metadata_equals`), so a filter never costs a scan in Python.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from r3mem.errors import InvalidInput
from r3mem.store.namespace import Namespace
from r3mem.store.validation import check_json

_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")
MAX_KEYS = 16
Scalar = str | int | float | bool


@dataclass(frozen=True)
class RecallFilter:
    """Metadata equalities and a time window; hashable, so recall caches can key on it."""

    metadata: tuple[tuple[str, Scalar], ...] = ()
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if len(self.metadata) > MAX_KEYS:
            raise InvalidInput(f"metadata filter: at most {MAX_KEYS} keys, got {len(self.metadata)}")
        for key, value in self.metadata:
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise InvalidInput(f"metadata filter key {key!r} is not valid: use 1-64 letters, digits or _.:-")
            if not isinstance(value, str | int | float) or (isinstance(value, float) and not math.isfinite(value)):
                raise InvalidInput(f"metadata filter {key!r}: the value must be a string, number or boolean")
            check_json(value, f"metadata filter {key!r}")  # no lone surrogate or NUL reaches the database
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise InvalidInput(f"{name} must be a time in Unix seconds, got {value!r}")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise InvalidInput(f"until ({self.until}) must be later than since ({self.since})")

    @classmethod
    def of(cls, metadata: dict | None = None, since: float | None = None, until: float | None = None) -> RecallFilter:
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInput("metadata filter must be a JSON object of key: value")
        return cls(tuple(sorted((metadata or {}).items())), since, until)

    @property
    def empty(self) -> bool:
        return not self.metadata and self.since is None and self.until is None

    def clauses(self, prefix: str, metadata_equals) -> tuple[list[str], list]:
        """SQL conditions and params; `metadata_equals(column)` gives a backend's key/value test."""
        clauses, params = [], []
        for key, value in self.metadata:
            sql, key_param = metadata_equals(f"{prefix}metadata", key)
            clauses.append(sql)
            params += [key_param, json.dumps(value, ensure_ascii=False)]
        if self.since is not None:
            clauses.append(f"{prefix}created_at >= ?")
            params.append(float(self.since))
        if self.until is not None:
            clauses.append(f"{prefix}created_at < ?")
            params.append(float(self.until))
        return clauses, params


NO_FILTER = RecallFilter()


def where_sql(namespace: Namespace, level: str | None = None, prefix: str = "",
              flt: RecallFilter | None = None, metadata_equals=None) -> tuple[str, list]:
    """SQL condition and params selecting rows inside `namespace` (a filter: unset fields match all),
    of `level` if given, and passing `flt` (whose metadata test `metadata_equals` spells)."""
    clauses, params = [], []
    for name, value in namespace.set_fields().items():
        clauses.append(f"{prefix}{name}_id = ?")
        params.append(value)
    if level is not None:
        clauses.append(f"{prefix}level = ?")
        params.append(level)
    if flt is not None and not flt.empty:
        more, more_params = flt.clauses(prefix, metadata_equals)
        clauses += more
        params += more_params
    return " AND ".join(clauses), params
