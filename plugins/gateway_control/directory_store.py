"""The ``directory`` control store: the control store as files, for one box and for
``gateway control`` without a cloud.

Layout under ``path``:

- ``v000001.yaml``: a version's text exactly as published (``gateway check`` reads it), and
  ``v000001.json`` its record (source, time, digest);
- ``current``: the current version's number: what replicas poll, one small read;
- ``health.json``: the last sweep's hints; ``state/<name>.json``: a job's state;
- ``lock``: held (``flock``) by a publisher while it numbers and writes a version.

Every file is written to a temporary name and renamed over the old one, so a reader sees the
old file or the new one, never half of one. ``current`` is written last: a version is not
current before its files are complete. The next number is one more than the highest found
(``current`` or a version file), so a publisher that died half-way is never reused.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from gateway.control.base import ConfigVersion, HealthHint
from gateway.errors import ServiceUnavailableError
from gateway_control.encoding import (
    VersionRecord,
    check_keep_versions,
    decode_hints,
    decode_record,
    decode_state,
    digest_of,
    encode_hints,
    encode_record,
    encode_state,
)

T = TypeVar("T")
_VERSION_FILE = re.compile(r"^v(\d{6,})\.(yaml|json)$")
_STATE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class DirectoryControlStore:
    """The control store in one directory (created on first write).

    Args:
        path: the directory.
        keep_versions: how many of the newest config versions are kept.

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(self, path: str, keep_versions: int = 50) -> None:
        if not isinstance(path, str) or not path:
            raise TypeError(f"`path` must be a directory path, got {path!r}")
        self.path = Path(path)
        self.keep_versions = check_keep_versions(keep_versions)

    async def _call(self, work: Callable[[], T]) -> T:
        # File I/O and the publisher's lock wait happen in a worker thread, off the event loop.
        try:
            return await anyio.to_thread.run_sync(work)
        except OSError as exc:
            raise ServiceUnavailableError(
                f"the control store at {self.path} failed: {exc.strerror or exc}"
            ) from exc

    def _version_file(self, version: int, suffix: str) -> Path:
        return self.path / f"v{version:06d}.{suffix}"

    def _numbers(self) -> list[int]:
        if not self.path.is_dir():
            return []
        found = {int(m.group(1)) for p in self.path.iterdir() if (m := _VERSION_FILE.match(p.name))}
        return sorted(found)

    def _current(self) -> int:
        raw = _read(self.path / "current")
        try:
            return int(raw) if raw else 0
        except ValueError:
            raise ServiceUnavailableError(
                f"the control store at {self.path} holds a corrupt `current` file"
            ) from None

    def _version(self, version: int) -> ConfigVersion | None:
        raw = _read(self._version_file(version, "json"))
        return None if raw is None else decode_record(raw).at(version)

    # -- config versions -----------------------------------------------------------------------

    def _publish(self, text: str, source: str) -> ConfigVersion:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            numbers = self._numbers()
            version = max([self._current(), *numbers]) + 1
            record = VersionRecord(text, source, time.time(), digest_of(text))
            _write_atomically(self._version_file(version, "yaml"), text.encode("utf-8"))
            _write_atomically(self._version_file(version, "json"), encode_record(record))
            _write_atomically(self.path / "current", str(version).encode())
            for old in numbers:
                if old <= version - self.keep_versions:
                    for suffix in ("json", "yaml"):
                        self._version_file(old, suffix).unlink(missing_ok=True)
        return record.at(version)

    async def publish_config(self, text: str, source: str) -> ConfigVersion:
        return await self._call(lambda: self._publish(text, source))

    async def current_version(self) -> int:
        return await self._call(self._current)

    async def current_config(self) -> ConfigVersion | None:
        def read() -> ConfigVersion | None:
            version = self._current()
            return self._version(version) if version else None

        return await self._call(read)

    async def config_version(self, version: int) -> ConfigVersion | None:
        return await self._call(lambda: self._version(version))

    async def config_versions(self, limit: int = 20) -> list[ConfigVersion]:
        def read() -> list[ConfigVersion]:
            newest = self._current()
            found = (self._version(v) for v in range(newest, max(newest - limit, 0), -1))
            return [v for v in found if v is not None]

        return await self._call(read)

    # -- health hints and job state ------------------------------------------------------------

    def _put(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)

    def _state_file(self, name: str) -> Path:
        if not _STATE_NAME.match(name):
            raise ValueError(f"a job's state name must be a plain file name, got `{name}`")
        return self.path / "state" / f"{name}.json"

    async def put_health(self, hints: Sequence[HealthHint]) -> None:
        data = encode_hints(hints)
        await self._call(lambda: self._put(self.path / "health.json", data))

    async def health(self) -> list[HealthHint]:
        raw = await self._call(lambda: _read(self.path / "health.json"))
        return [] if raw is None else decode_hints(raw)

    async def get_state(self, name: str) -> Mapping[str, Any]:
        path = self._state_file(name)
        raw = await self._call(lambda: _read(path))
        return {} if raw is None else decode_state(raw)

    async def put_state(self, name: str, state: Mapping[str, Any]) -> None:
        path, data = self._state_file(name), encode_state(state)
        await self._call(lambda: self._put(path, data))

    # -- dashboard snapshots: one file per replica, its mtime set to when it expires -----------

    async def put_snapshot(self, replica: str, data: bytes, ttl_s: float) -> None:
        path = self._snapshot_file(replica)

        def put() -> None:
            self._put(path, data)
            expires = time.time() + ttl_s
            os.utime(path, (expires, expires))

        await self._call(put)

    def _snapshot_file(self, replica: str) -> Path:
        if not _STATE_NAME.match(replica):
            raise ValueError(f"a replica's name must be a plain file name, got `{replica}`")
        return self.path / "dashboard" / f"{replica}.json"

    async def snapshots(self) -> list[bytes]:
        folder = self.path / "dashboard"

        def read() -> list[bytes]:
            if not folder.is_dir():
                return []
            now, found = time.time(), []
            for path in folder.glob("*.json"):
                try:
                    if path.stat().st_mtime < now:
                        path.unlink(missing_ok=True)  # expired
                    elif (data := _read(path)) is not None:
                        found.append(data)
                except FileNotFoundError:
                    continue  # another reader removed it
            return found

        return await self._call(read)

    async def aclose(self) -> None:
        """Nothing is held open between calls."""
