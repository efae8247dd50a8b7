"""Emulator state: a JSON-able dict, optionally shared between processes through a file.

Several processes (web, worker, beat) may each mount their own emulator on the same file. Each request
holds an exclusive `flock` on `<file>.lock`, reloads the file if another process changed it, and writes it
back atomically (temporary file + `os.replace`) only if the request changed something.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

State = dict[str, Any]
FileSignature = tuple[int, int, int]


def empty_state() -> State:
    return {"format": 1, "ca": None, "zones": {}, "accounts": {}, "rate_limits": {}}


class StateStore:
    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self._thread_lock = threading.RLock()
        self._data: State = empty_state()
        self._loaded_signature: FileSignature | None = None
        self._dirty = False

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        """Exclusive access to the state for one request; saves it if `mark_dirty` was called."""
        with self._thread_lock, self._file_lock():
            self._reload_if_changed()
            self._dirty = False
            yield self._data
            if self._dirty:
                self._write()
                self._dirty = False

    def mark_dirty(self) -> None:
        self._dirty = True

    def replace(self, data: State) -> None:
        """Swap the whole state (reset); only valid inside a transaction."""
        self._data = data
        self._dirty = True

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self.path is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _signature(self) -> FileSignature | None:
        assert self.path is not None
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        # os.replace gives the file a new inode, so the inode catches a rewrite within the mtime granularity.
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _reload_if_changed(self) -> None:
        if self.path is None:
            return
        signature = self._signature()
        if signature == self._loaded_signature:
            return
        if signature is None:
            self._data = empty_state()
        else:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            self._data = {**empty_state(), **loaded}
        self._loaded_signature = signature

    def _write(self) -> None:
        if self.path is None:
            return
        fd, temp_name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._data, handle, indent=1, sort_keys=True)
            os.replace(temp_name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        self._loaded_signature = self._signature()
