"""The ``jsonl`` usage sink: one JSON object per line, appended to a file.

Each line is ``{"type": "usage", ...every UsageRecord field}`` or ``{"type": "audit", ...every
AuditRecord field}``; ``cost_nanos`` is an exact integer. A batch is appended, flushed and
fsync'd before :meth:`JsonlUsageSink.write` returns, so an acknowledged batch survives a crash.
A batch may be appended twice (a retry after a failure that happened after the write): lines
carry ``request_id`` / ``audit_id``, and whatever reads the file keeps the first line of each id.
The file is opened per batch, so log rotation (rename, then a new file) needs no signal.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio.to_thread
import msgspec

from gateway.governance.sinks import AuditRecord, UsageRecord
from gateway_usage.encoding import audit_dict, usage_dict

_encode = msgspec.json.Encoder().encode


class JsonlUsageSink:
    """Usage and audit records appended to the file at ``path`` (its directory is created).

    Raises:
        TypeError: ``path`` is missing or not a string.
    """

    def __init__(self, path: str) -> None:
        if not isinstance(path, str) or not path:
            raise TypeError(f"`path` must be a file path, got {path!r}")
        self.path = path
        self._lock = threading.Lock()  # lines of two batches never interleave

    async def _append(self, lines: list[bytes]) -> None:
        data = b"".join(lines)

        def work() -> None:
            with self._lock:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "ab") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())

        await anyio.to_thread.run_sync(work)

    async def write(self, records: Sequence[UsageRecord]) -> None:
        await self._append([_encode({"type": "usage", **usage_dict(r)}) + b"\n" for r in records])

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        await self._append([_encode({"type": "audit", **audit_dict(r)}) + b"\n" for r in records])

    async def aclose(self) -> None:
        """Nothing to release: every batch is already on disk."""
