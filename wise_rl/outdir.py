"""An output folder that one run owns: an exclusive lock that names its holder, and disk-full errors that say where.

:func:`hold_folder` takes an advisory ``flock`` on ``FOLDER/.lock`` for the duration of a ``with`` block and writes
the holder (pid, host, command, start time) into it. A second run on the same folder fails at once with
:class:`FolderLockedError` naming that process. The kernel drops the lock when its process dies, even on
``kill -9``, so a stale ``.lock`` file never blocks a re-run. (``flock`` is per open file: two ``with`` blocks in one
process exclude each other too.) Taking over such a stale lock logs whose it was.

:func:`disk_full_errors` turns the write failures of a full disk into :class:`DiskFullError` (an ``OSError`` with
``errno.ENOSPC``) that names the folder and its free space: ``OSError`` ENOSPC / EDQUOT from Python or safetensors,
and torch's ``RuntimeError: [enforce fail at inline_container.cc:…] unexpected pos …`` / ``PytorchStreamWriter
failed writing file …``, which is what ``torch.save`` raises on a full disk without saying so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from wise_rl.errors import DiskFullError, FolderLockedError  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# torch.save's messages when the underlying write fails (no errno reaches Python)
_TORCH_WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed", "inline_container.cc", "file write failed")
_NO_SPACE_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


@contextlib.contextmanager
def hold_folder(folder, what: str = "a wise-rl run") -> Iterator[Path]:
    """Hold ``folder`` (created if needed) exclusively while the block runs; raise :class:`FolderLockedError` at
    once when another process (or another block of this one) holds it. A lock file that still names a holder
whose process died (``kill -9``) is taken over with a warning naming it."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(path)
            raise FolderLockedError(
                f"{folder} is in use by {holder}; wait for that run to end, stop it, or use another folder"
            ) from None
        _report_stale(path)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                  "command": " ".join(sys.argv), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        try:
            yield folder
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _report_stale(path: Path) -> None:
    """Log the holder a lock file still names after its process died without releasing it (``kill -9``, a node
    lost): the lock is ours now, the message says whose it was."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(rec, dict) or "pid" not in rec:
        return
    if rec.get("host") != socket.gethostname():
        state = "from another host; the lock was free"
    elif _pid_alive(rec["pid"]):
        state = "its process exists but no longer holds the lock"
    else:
        state = "that process is gone"
    logger.warning("%s: taking over the stale lock of %s (%s)", path.parent, _read_holder(path), state)


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, TypeError):
        return True
    return True


def _read_holder(path: Path) -> str:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        return (f"{rec.get('what', 'a run')} (pid {rec['pid']} on {rec.get('host', '?')}, since {rec.get('since')}, "
                f"command: {rec.get('command', '?')})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its details are not written yet)"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_write_failure(exc: BaseException) -> tuple[bool, bool]:
    """``(is a write failure, certainly no space)`` for ``exc`` or anything it was raised from."""
    write = no_space = False
    for e in _causes(exc):
        text = str(e)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            write = no_space = True
        elif any(t in text for t in _NO_SPACE_TEXT):
            write = no_space = True
        elif isinstance(e, RuntimeError) and any(t in text for t in _TORCH_WRITE_FAILURES):
            write = True
    return write, no_space


def free_bytes(folder) -> int | None:
    """Free bytes on the disk holding ``folder`` (its nearest existing parent), None when unknown."""
    path = Path(folder).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _human(n: int | None) -> str:
    if n is None:
        return "unknown space"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


LOW_SPACE = 256 * 1024 * 1024  # below this, a write failure without errno is reported as a full disk


@contextlib.contextmanager
def disk_full_errors(folder, doing: str = "writing") -> Iterator[None]:
    """Re-raise a full-disk write failure inside the block as :class:`DiskFullError` naming ``folder`` and its free
    space; a torch write failure with plenty of space left becomes an ``OSError`` (EIO) saying so; any other error
    passes unchanged."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        write, no_space = _is_write_failure(exc)
        if not write:
            raise
        free = free_bytes(folder)
        if no_space or (free is not None and free < LOW_SPACE):
            msg = (f"No space left on device: {doing} under {folder} failed; the disk holding it has "
                   f"{_human(free)} free. Free space (or move output_dir) and re-run the same command: a partly "
                   "written checkpoint is skipped")
            raise DiskFullError(errno.ENOSPC, msg) from exc
        else:
            msg = (f"{doing} under {folder} failed ({str(exc).splitlines()[0][:200]}); the disk holding it has "
                   f"{_human(free)} free, so it may be a quota or an I/O error rather than a full disk")
            raise OSError(errno.EIO, msg) from exc
