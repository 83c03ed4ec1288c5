"""Files that hold secrets, personal data or a broker's configuration: how they are written and checked.

Writing: a temporary file gets a random name from ``mkstemp`` in the target's directory (``O_EXCL``, so a
name someone planted, a symlink included, is never opened) and its mode from ``fchmod`` on the open
descriptor, whatever the umask, so no path that may have been swapped for a link is ever chmodded.
``os.replace`` then renames it over the target: a link planted at the target is replaced, never written
through, and a reader sees the old file or the new one whole.

Checking: a secret file (a signing key, a TLS key, a password) that other users may read is refused
with one line that says how to fix it, except in systemd's credentials directory, which systemd fills
for the service alone.

Shared by the gate agent and the collector (standard library only).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["new_file", "replacing_file", "write_new", "replace_atomically", "create_private",
           "secret_file_problem", "sync_directory"]


def write_new(path: str | os.PathLike, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path``, which must not exist: FileExistsError if anything is there (a dangling
    symlink too). The file appears whole with ``mode``, or not at all."""
    with new_file(path, mode) as handle:
        handle.write(data)


def replace_atomically(path: str | os.PathLike, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path``, replacing what is there whole (a symlink there is replaced, not
    followed)."""
    with replacing_file(path, mode) as handle:
        handle.write(data)


@contextmanager
def new_file(path: str | os.PathLike, mode: int) -> Iterator[BinaryIO]:
    """A binary handle whose content becomes ``path`` when the block ends without an error.

    The name is claimed first with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (FileExistsError if taken), so two
    writers never both succeed and nothing existing is ever overwritten; the content is written aside
    and renamed over that empty claim. On an error both are removed.
    """
    path = Path(path)
    claim = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(claim)
    try:
        with replacing_file(path, mode) as handle:
            yield handle
    except BaseException:
        _unlink_quietly(path)
        raise


@contextmanager
def replacing_file(path: str | os.PathLike, mode: int) -> Iterator[BinaryIO]:
    """A binary handle on a fresh temporary file beside ``path``; when the block ends without an error
    it is flushed to disk and renamed to ``path``, and the directory entry is synced too (a USB stick
    pulled right after the command keeps the file). On an error the temporary file is removed."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _set_mode(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        _unlink_quietly(temporary)
        raise
    sync_directory(path.parent)


def create_private(path: str | os.PathLike, mode: int = 0o600) -> bool:
    """Create an empty file with ``mode`` (whatever the umask) unless something exists there; True if it
    was created. SQLite gives the -wal and -shm files it makes beside a database the database's mode,
    so creating the database file this way first keeps all three private."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:
        return False
    try:
        _set_mode(fd, mode)
    finally:
        os.close(fd)
    return True


def secret_file_problem(path: str | os.PathLike) -> str | None:
    """Why the secret in ``path`` must not be trusted as the file stands (other users may read or replace
    it), or None. The file's own mode counts (a symlink is followed). Files inside systemd's
    $CREDENTIALS_DIRECTORY are exempt: systemd made them for this service alone."""
    path = Path(path)
    if _in_credentials_directory(path):
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} holds a secret but other users may read or change it (mode {mode:03o}); chmod 600 {path}"
    return None


def sync_directory(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (best effort: some filesystems cannot sync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _in_credentials_directory(path: Path) -> bool:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(directory))


def _set_mode(fd: int, mode: int) -> None:
    try:
        os.fchmod(fd, mode)
    except OSError as error:
        # A filesystem without Unix modes (a FAT USB stick for bundles) has its own fixed mode.
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise


def _unlink_quietly(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
