"""The ``directory`` record archive: raw usage records as JSON-lines files by date, under one
directory (one box; ``s3`` for a cloud): ``<path>/<day>/<name>.jsonl``.

Each object is written to a temporary file beside its final name, flushed to disk, then renamed
over it: a reader sees the old object or the new one, never half of one, and writing a name
again (a redelivered batch) replaces it.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import anyio.to_thread

_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


class DirectoryArchive:
    """Objects under the directory ``path`` (created on first use).

    Raises:
        TypeError: ``path`` is not a non-empty string.
    """

    def __init__(self, path: str) -> None:
        if not isinstance(path, str) or not path:
            raise TypeError(f"`path` must be a directory path, got {path!r}")
        self.path = path

    async def put(self, day: str, name: str, data: bytes) -> str:
        """Store ``data`` as ``<path>/<day>/<name>.jsonl``; return that file's path.

        Raises:
            ValueError: ``day`` is not ``YYYY-MM-DD``, or ``name`` is not a plain file name
                (letters, digits, ``._-``; so that nothing lands outside the directory).
            OSError: the file could not be written.
        """
        if not _DAY.match(day):
            raise ValueError(f"archive day must be YYYY-MM-DD, got {day!r}")
        if not _NAME.match(name):
            raise ValueError(f"archive name must be letters, digits and ._- only, got {name!r}")
        target = Path(self.path) / day / f"{name}.jsonl"

        def work() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
            try:
                with open(temporary, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, target)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise

        await anyio.to_thread.run_sync(work)
        return str(target)

    async def aclose(self) -> None:
        """Nothing to release: every object is on disk when :meth:`put` returns."""
