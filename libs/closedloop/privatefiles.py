"""Files only their owner may read, made once: the secret key, the trust material.

A folder is 0700 and a file 0600 from the moment it exists: the content is written to
a private temporary file and linked into place, so the file appears whole or not at
all, and a file that appeared meanwhile (another process starting at the same time)
is kept, never replaced: both then read the same content. A file or folder that exists
with looser permissions (made by an older version, or by hand) is tightened.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """`path` as a folder only its owner can enter, made with its parents if missing."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    tighten(path, FOLDER_MODE)
    return path


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file's content, writing `make()` first if it does not exist yet."""
    if not path.exists():
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".new-")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(make())
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            Path(temporary).unlink()
    tighten(path, FILE_MODE)
    return path.read_bytes()


def tighten(path: Path, mode: int) -> bool:
    """Sets `mode` if the path allows more; True if it had to."""
    if stat.S_IMODE(path.stat().st_mode) == mode:
        return False
    path.chmod(mode)
    return True
