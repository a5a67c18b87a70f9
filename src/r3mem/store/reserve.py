"""`Reserve`: spare disk space kept beside an SQLite store, given up so that deletes work on a full disk.

On a full disk SQLite cannot commit even a DELETE: it appends the pages it changes to its
write-ahead log, and the log cannot grow. So the store keeps `RESERVE_BYTES` of real blocks in
a file beside the database, made when the store opens; a delete that fails for want of space
removes that file and tries once more, so space can always be freed through the API. The
reserve is made again after that delete, and whenever the store opens, if there is room.
"""

from __future__ import annotations

import os
from pathlib import Path

# Room for the log pages of deleting a few thousand records (about 4 KiB per page changed),
# small beside any real disk; on a nearly full or tiny one (the fault tests' 2 MB file system),
# at most a quarter of the space free when it is made.
RESERVE_BYTES = 1 << 20
_SHARE_OF_FREE = 4
_MIN_BYTES = 64 << 10  # less would free too little to log a delete: better none, and say so by its absence


class Reserve:
    def __init__(self, path: Path, size: int = RESERVE_BYTES) -> None:
        self.path, self.size = path, size

    def ensure(self) -> bool:
        """Make the reserve if it is missing and the disk has room for it; True if it exists."""
        if self.path.is_file():
            return True
        try:  # real zeros, not a sparse file: the blocks must be taken now to be given back later
            stat = os.statvfs(self.path.parent)
            size = min(self.size, stat.f_bavail * stat.f_frsize // _SHARE_OF_FREE)
            if size < _MIN_BYTES:
                return False
            with self.path.open("wb") as fh:
                fh.write(b"\0" * size)
                fh.flush()
                os.fsync(fh.fileno())
            return True
        except OSError:
            self.path.unlink(missing_ok=True)
            return False

    def release(self) -> bool:
        """Give the space back; False when there was no reserve to give."""
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False
