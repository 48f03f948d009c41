"""The pepper: the server-side secret that virtual keys' secrets are HMAC'd with.

From ``GATEWAY_KEY_PEPPER`` when set (a fleet must set the same value on every replica, or keys
created on one are refused by the others). Otherwise, for one box, a random pepper is created
once in ``<data_dir>/key_pepper`` (mode 0600) and reused; losing that file invalidates every
virtual key.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from gateway.governance.records import PEPPER_ENV

log = logging.getLogger("gateway.governance")

MIN_PEPPER_CHARS = 16
PEPPER_FILE = "key_pepper"


def _checked(pepper: str, source: str) -> bytes:
    pepper = pepper.strip()
    if len(pepper) < MIN_PEPPER_CHARS:
        raise ValueError(f"{source} must be at least {MIN_PEPPER_CHARS} characters")
    return pepper.encode()


def load_pepper(data_dir: str) -> bytes:
    """The pepper: ``$GATEWAY_KEY_PEPPER``, else the contents of ``<data_dir>/key_pepper``
    (created with a random value if missing).

    Raises:
        ValueError: the variable or the file holds fewer than 16 characters.
        OSError: the file cannot be read or created.
    """
    configured = os.environ.get(PEPPER_ENV)
    if configured is not None:
        return _checked(configured, f"${PEPPER_ENV}")
    path = Path(data_dir) / PEPPER_FILE
    if not path.exists():
        _create(path)
    return _checked(path.read_text(), str(path))


def _create(path: Path) -> None:
    """Write a random pepper to ``path`` unless another process does first.

    Written to a private temporary file, then hard-linked into place: the link either makes a
    complete file appear at once or fails because one exists, so of worker processes starting
    together exactly one pepper wins and nobody reads a half-written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            return
    finally:
        temporary.unlink(missing_ok=True)
    log.warning(
        "created a random key pepper in %s: back it up, and set $%s to one value on every "
        "replica of a fleet (keys hashed with one pepper fail with another)",
        path,
        PEPPER_ENV,
    )
