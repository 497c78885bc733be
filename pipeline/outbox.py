"""Where a run's outputs go: `<out>/<period>/`, replaced whole or not at all.

`open_outbox(out, period)` is a context manager: it takes the lock of `<out>/<period>`, finishes what a
killed run left (`recover`), makes a staging folder `<out>/.<period>.partial-<pid>` with the run's log
file (`tonghop.log`, the "tonghop" logger), and yields an `Outbox`. The run writes into
`outbox.staging` and calls `outbox.commit()`, which swaps the staging folder in for the previous
outputs with two renames. However the block ends (an error, Ctrl-C, a full disk), the staging folder
is removed, the previous outputs stay as they were, the lock is released and its file removed.

Errors: OutputError (the folder cannot be written: read-only, full, a file in the way, another run
holds it), with a Vietnamese message and no exception text; RunError (anything unexpected), naming
the log kept beside the outputs as `<out>/<period>-loi.log`.

The lock is the operating system's (flock on POSIX, msvcrt.locking on Windows) on the file
`<out>/.<period>.lock`: the system releases it when the process ends, however it ends, so a file left
by a killed run is no lock at all; the next run takes it and removes it when done. Where neither
exists, the lock file is created exclusively and holds the process id: a file whose process is gone is
taken over.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Outbox", "OutputError", "RunError", "open_outbox", "system_reason"]

log = logging.getLogger("tonghop")


class OutputError(Exception):
    """The output folder cannot be written (read-only, full, locked by another run)."""


class RunError(Exception):
    """An unexpected failure; the traceback is in the log file named by the message."""


_REASONS = {
    errno.ENOSPC: "ổ đĩa đã đầy",
    errno.EDQUOT: "đã hết dung lượng được phép dùng trên ổ đĩa",
    errno.EACCES: "không có quyền ghi vào thư mục này",
    errno.EPERM: "không có quyền ghi vào thư mục này",
    errno.EROFS: "ổ đĩa chỉ cho phép đọc",
    errno.EFBIG: "tệp vượt quá kích thước hệ thống cho phép",
    errno.ENOTDIR: "một phần của đường dẫn là tệp chứ không phải thư mục",
    errno.ENAMETOOLONG: "đường dẫn quá dài",
    errno.EIO: "lỗi đọc ghi ổ đĩa",
    errno.EEXIST: "đã có một tệp trùng tên",
}


def system_reason(exc: OSError) -> str:
    """Why the system refused, in Vietnamese (the exception's own text goes to the log)."""
    return _REASONS.get(exc.errno, "hệ thống báo lỗi khi ghi tệp")


@dataclass
class Outbox:
    out: Path  # the output folder, absolute
    period: str
    staging: Path  # write the outputs here
    final: Path  # <out>/<period>
    committed: bool = False

    def commit(self) -> None:
        """Close the log and put the staging folder in place of the previous outputs."""
        _close_log(self.staging / "tonghop.log")
        _swap(self.staging, self.final)
        self.committed = True


@contextlib.contextmanager
def open_outbox(out: Path, period: str) -> Iterator[Outbox]:
    """Yield the Outbox of `<out>/<period>` for one run (see the module's docstring)."""
    out = Path(out).resolve()
    final = out / period
    for folder in (out, final):
        if folder.exists() and not folder.is_dir():
            raise OutputError(
                f"Không ghi được kết quả vào «{folder}»: đó là một tệp chứ không phải thư mục. "
                "Đề nghị đổi tên hoặc xóa tệp đó, hoặc chọn thư mục kết quả khác."
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("cannot make %s: %r", out, exc)
        raise OutputError(f"Không tạo được thư mục kết quả {out}: {system_reason(exc)}.") from None
    lock = _Lock(out / f".{period}.lock")
    try:
        held = lock.acquire()
    except OSError as exc:
        log.info("cannot lock %s: %r", out, exc)
        raise OutputError(f"Không ghi được vào thư mục {out}: {system_reason(exc)}.") from None
    if not held:
        raise OutputError(
            f"Một lần chạy khác đang ghi vào thư mục {final}. Đề nghị chờ lần chạy đó xong rồi chạy lại."
        )
    box = Outbox(out, period, out / f".{period}.partial-{os.getpid()}", final)
    try:
        recover(out, period)
        box.staging.mkdir()
        _open_log(box.staging / "tonghop.log")
        yield box
    except OSError as exc:
        log.exception("cannot write outputs")
        _keep_log(box)
        raise OutputError(f"Không ghi được kết quả vào thư mục {final}: {system_reason(exc)}.") from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        log.warning("run interrupted")
        raise
    except Exception:
        log.exception("run failed")
        raise RunError(str(_keep_log(box))) from None
    finally:
        _close_log(box.staging / "tonghop.log")
        shutil.rmtree(box.staging, ignore_errors=True)
        if not box.committed:  # interrupted between the two renames of the swap: undo the first
            with contextlib.suppress(OSError):
                recover(out, period)
        lock.release()


def recover(out: Path, period: str) -> None:
    """Finish what a killed run left: put back a previous output set it had moved aside, drop partials."""
    final = out / period
    for old in sorted(out.glob(f".{period}.old-*")):
        if not final.exists() and old.is_dir():
            old.rename(final)
        elif old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    for partial in out.glob(f".{period}.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def _swap(staging: Path, final: Path) -> None:
    """Replace the previous outputs by the new ones with two renames on one filesystem."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _keep_log(box: Outbox) -> Path:
    """Keep the log of a failed run beside the outputs (the staging folder is about to go)."""
    kept = box.out / f"{box.period}-loi.log"
    _close_log(box.staging / "tonghop.log")
    try:
        if (box.staging / "tonghop.log").stat().st_size:  # (nothing could be written: nothing to keep)
            shutil.copyfile(box.staging / "tonghop.log", kept)
    except OSError:  # a full disk: no log rather than half of one
        with contextlib.suppress(OSError):
            kept.unlink()
    return kept


class _LogFile(logging.FileHandler):
    """The run's log file. A record it cannot write (a full disk) is dropped without a word: the run
    says what went wrong itself, and logging's own report would print tracebacks to the terminal."""

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = True


def _open_log(path: Path) -> None:
    handler = _LogFile(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _close_log(path: Path) -> None:
    """Detach and close the log file at `path` (a flush that fails on a full disk is let go)."""
    for handler in [h for h in log.handlers if isinstance(h, _LogFile)]:
        if Path(handler.baseFilename) == path.absolute():
            log.removeHandler(handler)
            with contextlib.suppress(OSError, ValueError):
                handler.close()


class _Lock:
    """An exclusive lock on a file, released and the file removed by release()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.kind = ""

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        try:
            import fcntl
        except ImportError:
            fcntl = None
        if fcntl is not None:
            return self._posix(fcntl)
        try:
            import msvcrt
        except ImportError:
            return self._exclusive()
        return self._windows(msvcrt)

    def _posix(self, fcntl) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    return False
                raise
            # the file may have been removed (and made anew) by the run releasing it just before:
            # a lock on a removed file locks nothing
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self.fd, self.kind = fd, "posix"
                return True
            os.close(fd)

    def _windows(self, msvcrt) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            os.close(fd)
            return False
        self.fd, self.kind = fd, "windows"
        return True

    def _exclusive(self) -> bool:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                if not self._stale():
                    return False
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            os.write(fd, str(os.getpid()).encode())
            self.fd, self.kind = fd, "exclusive"
            return True
        return False

    def _stale(self) -> bool:
        """Whether the exclusive lock file was left by a process that is gone."""
        try:
            pid = int(self.path.read_text(encoding="ascii").strip() or "0")
        except (OSError, ValueError):
            return False
        if pid <= 0 or pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def release(self) -> None:
        """Remove the lock file, then let the lock go (another run that opened the file meanwhile
        sees it removed and opens it anew)."""
        if self.fd is None:
            return
        if self.kind != "windows":  # Windows cannot remove a file still open
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            if self.kind == "windows":
                import msvcrt

                msvcrt.locking(self.fd, msvcrt.LK_UNLCK, 1)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None
        if self.kind == "windows":
            with contextlib.suppress(OSError):  # unless another run has it open: then it stays
                os.unlink(self.path)
