"""Files and directories that only their owner may read: the SQLite database (every record and message), the
outbox, the state directory with the signing secret. Existing ones keep their mode; new ones are made 0600 and
0700 whatever the umask (which can only take bits away)."""

from __future__ import annotations

import contextlib
import os


def private_directory(path: str | os.PathLike[str]) -> None:
    """Make a directory, and each of its parents that is missing, readable by their owner only (0700)."""
    missing = []
    at = os.path.abspath(path)
    while not os.path.isdir(at):
        missing.append(at)
        at = os.path.dirname(at)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            os.mkdir(directory, 0o700)


def private_file(path: str | os.PathLike[str]) -> None:
    """Create an empty file readable by its owner only (0600), and the directories it is in that are missing
    (0700). SQLite takes an empty file as a new database, and gives its -wal and -shm files that file's mode."""
    private_directory(os.path.dirname(os.path.abspath(path)))
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
