"""Files holding personal data or secrets are readable by their owner only (mode 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE = 0o600


def private_file(path: Path) -> Path:
    """Make `path` an owner-only file before personal data or a secret is written to it:
    created 0600 if new (so it is never readable by others, even for a moment), tightened
    to 0600 if it exists. Writers then open it as usual; a file keeps its mode when rewritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
    finally:
        os.close(fd)
    return path


def tighten(path: Path) -> bool:
    """0600 for an existing file that others (group or world) may read or write; True if
    its mode changed. A file of another user's is left alone (only its owner may chmod it)."""
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077 == 0 or info.st_uid != os.getuid():
        return False
    os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700 | 0o600)
    return True
