"""Error types: one base class, each subclass also the builtin it refines.

The CLI maps every `R3MemError` to one stderr line and its `exit_code`; callers
that only know builtins can still catch `ValueError` or `FileNotFoundError`.
"""

from __future__ import annotations


class R3MemError(Exception):
    """Base class of every error r3mem raises on purpose."""

    exit_code = 1


class InvalidInput(R3MemError, ValueError):
    """The caller's input cannot be processed (empty text, bad encoding, bad ratio)."""

    exit_code = 2


class ModelNotFound(R3MemError, FileNotFoundError):
    """A base model is not available locally; r3mem never downloads one."""

    exit_code = 3


class CheckpointError(R3MemError, ValueError):
    """A checkpoint directory is missing, unreadable or corrupt."""

    exit_code = 4


class CheckpointMismatch(CheckpointError):
    """A checkpoint or memory file was made for another base model or checkpoint."""

    exit_code = 5


class MemoryFileError(R3MemError, ValueError):
    """A `.r3m` memory file is missing, truncated, corrupt or of an unknown format."""

    exit_code = 4


class DuplicateRecord(InvalidInput):
    """An import names record ids the store already holds: refused whole, nothing changed."""


class RecordNotFound(R3MemError, LookupError):
    """No record with that id in the caller's namespace (another namespace's records are invisible)."""

    exit_code = 6


class StoreError(R3MemError, RuntimeError):
    """The memory store cannot be opened or written: bad URL, unreachable server, disk full, corrupt row."""

    exit_code = 7


class CorruptRecord(StoreError):
    """A stored record fails its checksums: its row was damaged after it was written.

    Unlike other store errors it is not transient: every read of that record fails the same
    way until the record is deleted (or restored from an export).
    """


class AccessDenied(R3MemError, PermissionError):
    """An API key is missing, unknown, or not allowed the namespace it asked for."""

    exit_code = 8


class NotVerified(R3MemError):
    """A reconstruction was required to be the source token for token (`--require-verified`),
    and a segment is not, or the memory holds no digests to check it against."""

    exit_code = 9


class CostTooHigh(R3MemError, ValueError):
    """A request would cost more model work than one request may (`r3mem.bounds`); the message names the cap."""

    exit_code = 2


class DeadlineExceeded(R3MemError, TimeoutError):
    """A request ran past its deadline and was stopped between decoding steps; retrying later may succeed."""

    exit_code = 10
