"""One writer per run folder.

``RunLock`` lets one process at a time write a run folder: ``fcntl.flock`` on ``RUN_DIR/.lock``,
non-blocking, held on an open descriptor for the whole run (the kernel releases it if the process
dies).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path

from gonomaly.errors import GonomalyError

LOCK_FILE = ".lock"
_HELD: dict[str, list] = {}  # real path of RUN_DIR -> [fd, count, created]
_HELD_GUARD = threading.Lock()


class RunLock:
    """Exclusive, non-blocking ``flock`` on ``RUN_DIR/.lock`` for one writer process.

    Re-entrant within a process (a CLI command holding it may call ``save``, which takes it
    too). A second process fails at once with ``RUN_DIR: in use by another gonomaly process
    (pid N)``. On release the lock file is removed (and the folder, if this lock created it and
    it stayed empty); a waiting opener re-checks the inode, so removal cannot split the lock.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._key: str | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> bool:
        self.release()
        return False

    def acquire(self) -> None:
        created = not self.run_dir.exists()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GonomalyError(f"{self.run_dir}: cannot create run folder ({exc.strerror or exc})") from None
        key = os.path.realpath(self.run_dir)
        with _HELD_GUARD:
            if key in _HELD:
                _HELD[key][1] += 1
                self._key = key
                return
            fd = self._lock(self.run_dir / LOCK_FILE)
            _HELD[key] = [fd, 1, created]
            self._key = key

    def _lock(self, path: Path) -> int:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise GonomalyError(f"{self.run_dir}: cannot create lock file ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                pid = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise GonomalyError(
                        f"{self.run_dir}: in use by another gonomaly process (pid {pid})") from None
                raise GonomalyError(f"{self.run_dir}: cannot lock ({exc.strerror or exc})") from None
            try:  # the previous holder may have removed the file between our open and flock
                current = os.stat(path)
                mine = os.fstat(fd)
                same = (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev)
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        with _HELD_GUARD:
            entry = _HELD[key]
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _HELD[key]
        fd, _, created = entry
        path = self.run_dir / LOCK_FILE
        try:
            if (os.stat(path).st_ino, os.stat(path).st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev):
                path.unlink()
        except OSError:
            pass
        os.close(fd)
        if created:
            try:
                self.run_dir.rmdir()  # only succeeds if nothing was written
            except OSError:
                pass


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


