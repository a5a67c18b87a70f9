"""`Namespace`: who a memory belongs to, passed the same way to every store operation.

A record is written under one exact namespace. A namespace used to read is a filter:
the fields it sets must match and the fields it leaves out match anything, so
`Namespace(user="alice")` sees every agent's and session's records of alice, and
never another user's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r3mem.errors import InvalidInput

FIELDS = ("user", "agent", "session")
# Letters, digits and a few separators: safe in URLs, file names and SQL identifiers alike.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}"
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class Namespace:
    """`user`, `agent`, `session`: at least one is required (mem0's user_id/agent_id/run_id)."""

    user: str | None = None
    agent: str | None = None
    session: str | None = None

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not _ID.fullmatch(value):
                raise InvalidInput(
                    f"namespace {name} {value!r} is not valid: use 1-128 letters, digits or _.@:+- "
                    "starting with a letter or digit"
                )
        if not any(getattr(self, name) for name in FIELDS):
            raise InvalidInput("a namespace needs at least one of user, agent, session")

    def as_dict(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in FIELDS}

    def set_fields(self) -> dict[str, str]:
        return {name: value for name, value in self.as_dict().items() if value is not None}

    def contains(self, other: Namespace) -> bool:
        """True when every field this namespace sets has the same value in `other`."""
        return all(getattr(other, name) == value for name, value in self.set_fields().items())

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.set_fields().items())

    @classmethod
    def from_dict(cls, data: dict) -> Namespace:
        if not isinstance(data, dict):
            raise InvalidInput("namespace must be an object with user, agent and/or session")
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise InvalidInput(f"unknown namespace field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: data.get(k) for k in FIELDS})
