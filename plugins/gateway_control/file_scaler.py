"""The ``file`` fleet scaler: the desired replicas of a model group kept in a JSON file.

For teams without a cloud, and for tests: scale-fleet writes ``{"replicas": n, "updated_at":
t}`` to ``path`` and the operator's own tooling (a systemd timer, a script that starts
engines) reads it. The file is replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from gateway.errors import ServiceUnavailableError


class FileScaler:
    """A :class:`gateway.control.base.FleetScaler` over one JSON file.

    Args:
        path: the file (created with its folder on the first ``set_desired``).
        initial: the replicas reported before the file exists.

    Raises:
        ValueError: no path, or a negative ``initial``.
    """

    def __init__(self, path: str, initial: int = 1) -> None:
        if not path:
            raise ValueError("`path` is required: the JSON file holding the desired replicas")
        if initial < 0:
            raise ValueError("`initial` must be 0 or more")
        self.path = Path(path)
        self.initial = initial

    async def current(self) -> int:
        """The replicas in the file (``initial`` when there is none yet).

        Raises:
            ServiceUnavailableError: the file cannot be read, or holds no ``replicas`` count.
        """
        return await asyncio.to_thread(self._read)

    async def set_desired(self, replicas: int) -> None:
        """Write ``replicas`` to the file, atomically.

        Raises:
            ValueError: a negative count.
            ServiceUnavailableError: the file cannot be written.
        """
        if replicas < 0:
            raise ValueError("replicas must be 0 or more")
        await asyncio.to_thread(self._write, replicas)

    async def aclose(self) -> None:
        return None

    def _read(self) -> int:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return self.initial
        except (OSError, ValueError) as exc:
            raise ServiceUnavailableError(f"fleet file {self.path} unreadable: {exc}") from None
        replicas = data.get("replicas") if isinstance(data, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ServiceUnavailableError(
                f'fleet file {self.path}: expected {{"replicas": <count>}}, got {data!r}'
            )
        return replicas

    def _write(self, replicas: int) -> None:
        body = json.dumps({"replicas": replicas, "updated_at": time.time()}) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(body)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ServiceUnavailableError(f"fleet file {self.path} not written: {exc}") from None
