"""Run a reading function over many files in one supervised worker process.

A reader fed an untrusted file can abort the whole process (python-calamine allocates the full grid of
a crafted sheet and Rust aborts on the failed allocation), hang, or eat all memory. `map_isolated`
runs `func(item)` for each item in ONE long-lived worker process, so such a file costs only itself:

- the worker's address space is capped (RLIMIT_AS) at what it already maps + `memory_mb`, so a
  runaway allocation fails (MemoryError, or an abort) instead of taking the machine; where there is
  no `resource` module (Windows), a watchdog thread in the worker ends it once its memory passes the
  same bound (said once in the log);
- an item that runs longer than `timeout` seconds gets Failure("file-timeout"), the worker is killed
  and a new one carries on with the remaining items;
- a worker that dies (any signal or exit) gives its current item Failure("file-unreadable") and a new
  one carries on;
- an exception raised by `func`, BaseException included (pyo3's PanicException derives from it),
  comes back as Failure("file-unreadable", a Vietnamese detail), its text in `Failure.cause` for
  the log;
- the worker ignores Ctrl-C (the supervisor handles it) and dies with the supervisor, even after a
  kill -9 of it (PR_SET_PDEATHSIG on Linux, else a thread watching the parent).

Results come back in input order. Items travel in batches; the worker counts each finished item in
shared memory (no system call) and sends results in groups, so the overhead per item is a few
microseconds. `map_inline` has the same contract in-process (no crash, timeout or memory
protection), for tests and tiny runs.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from typing import Any

__all__ = ["CRASHED", "Failure", "map_inline", "map_isolated"]

log = logging.getLogger("tonghop")

CRASHED = "chương trình đọc tệp bị dừng đột ngột"
OUT_OF_MEMORY = "tệp cần quá nhiều bộ nhớ để đọc"
DAMAGED = "cấu trúc bên trong tệp không hợp lệ"
# what a reader's exception says about the file, by the exception's class name (python-calamine's)
_DETAILS = {
    "XmlError": "nội dung XML bên trong tệp bị hỏng",
    "ZipError": "tệp nén bị hỏng",
    "PasswordError": "tệp được bảo vệ bằng mật khẩu",
    "WorksheetNotFound": "tệp thiếu một trang mà chính nó khai báo",
}


@dataclass(frozen=True, slots=True)
class Failure:
    rule: str  # "file-unreadable" or "file-timeout"
    detail: str  # Vietnamese, for the finding's message
    cause: str = field(default="", compare=False)  # what went wrong, in the program's words: for the log


def map_inline(func: Callable[[Any], Any], items: Iterable) -> Iterator[tuple[Any, Any]]:
    """Yield (item, func(item) or Failure) in order, in this process; Ctrl-C and exit still propagate."""
    for item in items:
        try:
            result = func(item)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a reader's panic is BaseException too: it is the file's fault
            result = _failure(exc)
        yield item, result


def map_isolated(func: Callable[[Any], Any], items: Iterable, *, timeout: float = 30.0, memory_mb: int = 2048,
                 batch: int = 64) -> Iterator[tuple[Any, Any]]:
    """Yield (item, func(item) or Failure) in input order, computed in a supervised worker process.

    `func` must be picklable when the "fork" start method is unavailable (it is then sent to a
    spawned worker). `timeout` is per item, in seconds; `memory_mb` is the address space the worker
    may add to what it maps at start. Closing the generator early kills the worker. After a crash or
    a timeout, items the worker had finished but not yet sent back are read again by a new worker.
    """
    ctx = _context()
    source = iter(items)
    # [item, result, sent] in input order; result is _PENDING until known, sent: handed to the worker
    queue: deque[list] = deque()
    worker: _Worker | None = None
    try:
        while True:
            # first keep the worker supplied: as soon as results come in (not after they have been
            # yielded, which waits on the consumer), the next batch goes out while the worker is still
            # busy with half a batch, so it never waits for us
            unsent = [entry for entry in queue if not entry[2] and entry[1] is _PENDING]
            if not unsent and (worker is None or len(worker.sent) <= batch // 2):
                unsent = [[item, _PENDING, False] for item in itertools.islice(source, max(1, batch))]
                queue.extend(unsent)
            if not queue:
                break
            if unsent:
                if worker is None:
                    worker = _Worker(ctx, func, memory_mb, timeout)
                worker.offer(unsent)
            if queue[0][1] is not _PENDING:
                while queue and queue[0][1] is not _PENDING:
                    item, result, _ = queue.popleft()
                    yield item, result
                    if worker is not None:
                        worker.restart_clock()  # the consumer's time between items is not the item's
                continue
            if not worker.wait():
                worker.stop()
                worker = None
                for entry in queue:
                    entry[2] = False  # what the dead worker had not answered goes to the next one
    finally:
        if worker is not None:
            worker.stop()


_PENDING = object()
_FLUSH_EVERY = 0.05  # seconds: the worker sends finished results at least this often, and per batch


def _failure(exc: BaseException) -> Failure:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cause = text if len(text) <= 300 else text[:297] + "..."
    if isinstance(exc, MemoryError):
        return Failure("file-unreadable", OUT_OF_MEMORY, cause)
    return Failure("file-unreadable", _DETAILS.get(type(exc).__name__, DAMAGED), cause)


def _context():
    methods = multiprocessing.get_all_start_methods()
    # fork: no re-import, nothing to pickle but items and results, and the worker can inherit a file
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


class _Worker:
    """One worker process, the parent's end of its pipe, and the queue entries it is working on.

    The worker counts the items it has finished in shared memory (`progress`, no system call) and
    sends results in groups; the counter is what tells, on a timeout or a crash, which item was
    running.
    """

    def __init__(self, ctx, func: Callable, memory_mb: int, timeout: float) -> None:
        self.timeout = timeout
        self.sent: deque[list] = deque()  # queue entries sent and not answered yet, in order
        self.base = 0  # progress count when the worker was last given work while idle
        self.received = 0  # results received since then
        self.clock = (0, 0.0)  # (progress seen, when it was first seen)
        self.progress = ctx.RawValue("q", 0)
        # the worker's stderr (a Rust abort prints its reason there) goes to a file read on a crash
        # rather than over the progress display; only a forked worker can inherit the file
        self.errfile = tempfile.TemporaryFile() if ctx.get_start_method() == "fork" else None  # noqa: SIM115
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, name="tonghop-reader", daemon=True,
                                   args=(child, func, memory_mb, self.errfile, self.progress))
        if self.errfile is not None:  # forked: keep the child's collector off the pages it shares with us
            gc.freeze()
        try:
            with interrupts_ignored():  # a Ctrl-C now must not reach the child before it ignores them
                self.process.start()
        finally:
            if self.errfile is not None:
                gc.unfreeze()
        child.close()  # else the parent's copy would keep the pipe open after the worker dies
        hello = None
        if self.conn.poll(max(60.0, timeout)):
            with contextlib.suppress(EOFError, OSError):
                hello = self.conn.recv()
        if not (isinstance(hello, tuple) and hello[0] == "ready"):
            self.stop()
            raise RuntimeError("the reader worker process could not start")
        _say_memory_cap(hello[1], memory_mb)

    def offer(self, entries: list[list]) -> None:
        """Send these queue entries' items, unless that could block: then they wait for an idle worker.

        While busy, the worker has read its previous batch (at most half a batch is unanswered), so
        a batch that fits in the pipe's buffer is taken at once; a larger one could fill it while the
        worker fills the other direction with results, and each would wait for the other.
        """
        data = bytes(ForkingPickler.dumps([entry[0] for entry in entries]))
        if self.sent and len(data) > 32_768:
            return
        if not self.sent:
            self.base, self.received = self.progress.value, 0
            self.clock = (self.base, time.monotonic())
        self.conn.send_bytes(data)
        self.sent.extend(entries)
        for entry in entries:
            entry[2] = True

    def restart_clock(self) -> None:
        self.clock = (self.clock[0], time.monotonic())

    def wait(self) -> bool:
        """Fill in the results of the next group of items; False when the worker had to go.

        On a timeout or a crash, the item that was running gets its Failure, the results already
        sent are kept, and the other entries stay pending for a new worker.
        """
        while True:
            seen, since = self.clock
            done = self.progress.value
            now = time.monotonic()
            if done != seen:
                self.clock = (done, now)
            elif now - since > self.timeout:
                return self._fail("timeout")
            if self.conn.poll(min(0.05, max(0.0, since + self.timeout - now))):
                try:
                    self._fill(self.conn.recv())
                    return True
                except (EOFError, OSError):
                    return self._fail("died")

    def _fill(self, results: list) -> None:
        for result in results:
            self.sent.popleft()[1] = result
        self.received += len(results)

    def _fail(self, how: str) -> bool:
        if how == "timeout":
            self.kill()
        with contextlib.suppress(EOFError, OSError):  # results written before the end still count
            while self.conn.poll(0):
                self._fill(self.conn.recv())
        self.kill()
        if not self.sent:
            return False
        # the running item is the first one the worker had not finished; should it have finished
        # them all (a death while sending), blame the one awaited, so that the run always moves on
        finished_unsent = self.progress.value - self.base - self.received
        entry = self.sent[finished_unsent if 0 <= finished_unsent < len(self.sent) else 0]
        if how == "timeout":
            log.warning("reading %s took more than %gs: stopped", entry[0], self.timeout)
            entry[1] = Failure("file-timeout", f"{self.timeout:g} giây".replace(".", ","))
        else:
            code = self.process.exitcode
            log.warning("reader died on %s (%s)%s", entry[0], _exit_text(code), self.stderr_tail())
            entry[1] = Failure("file-unreadable", OUT_OF_MEMORY if code == _OUT_OF_MEMORY_EXIT else CRASHED,
                               _exit_text(code))
        return False

    def stderr_tail(self) -> str:
        """': <the line that says why>' from the dead worker's stderr, or ''."""
        if self.errfile is None:
            return ""
        try:
            self.errfile.seek(max(0, os.fstat(self.errfile.fileno()).st_size - 65_536))  # after a backtrace
            lines = self.errfile.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        telling = ("memory allocation", "panicked", "Fatal Python")
        why = next((ln for ln in lines if any(w in ln for w in telling)), lines[-1] if lines else "")
        return f": {why[:300]}" if why else ""

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def stop(self) -> None:
        """End the worker (politely when idle, else killed), reap it and close its pipe and file."""
        if not self.sent and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(2)
        self.kill()
        self.conn.close()
        if self.errfile is not None:
            self.errfile.close()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


def _worker_main(conn, func: Callable, memory_mb: int, errfile, progress) -> None:
    """The worker's loop: receive a batch (None: stop), run func on each item, count it in
    `progress`, and send the results (or Failures) in order: in groups, at least every 50 ms."""
    become_worker()
    if errfile is not None:
        with contextlib.suppress(Exception):  # cosmetic: never a reason for the worker not to start
            os.dup2(errfile.fileno(), 2)
            if faulthandler.is_enabled():  # it writes to its own copy of the old stderr: follow fd 2
                faulthandler.enable(file=2)  # a number: sys.stderr may be a capture with no fd
    cap = _limit_memory(memory_mb)
    outbox = _Outbox(conn, progress)
    # without it, results of quick items finished just before a slow one would wait for that one
    threading.Thread(target=outbox.flush_every, args=(_FLUSH_EVERY,), daemon=True).start()
    conn.send(("ready", cap))
    while True:
        try:
            items = conn.recv()
        except (EOFError, OSError):
            return
        if items is None:
            return
        for item in items:
            try:
                result = func(item)
            except BaseException as exc:  # the worker outlives anything a file makes the reader do
                result = _failure(exc)
            outbox.add(result)
        outbox.flush()


class _Outbox:
    """Results finished and not sent yet; the count in `progress` moves with them, under one lock."""

    def __init__(self, conn, progress) -> None:
        self.conn, self.progress = conn, progress
        self.lock = threading.Lock()
        self.results: list = []

    def add(self, result: Any) -> None:
        with self.lock:
            self.results.append(result)
            self.progress.value += 1

    def flush(self) -> None:
        with self.lock:
            if self.results:
                _send_results(self.conn, self.results)
                self.results = []

    def flush_every(self, seconds: float) -> None:
        with contextlib.suppress(OSError, EOFError):  # the supervisor is gone: so is this thread
            while True:
                time.sleep(seconds)
                self.flush()


def _send_results(conn, results: list) -> None:
    try:
        conn.send(results)
    except (OSError, EOFError):
        raise
    except Exception:  # an unpicklable result: say so for that item rather than lose the group
        safe = []
        for result in results:
            try:
                pickle.dumps(result)
                safe.append(result)
            except Exception as exc:
                safe.append(Failure("file-unreadable", f"kết quả không gửi được ({_failure(exc).detail})"))
        conn.send(safe)


def become_worker() -> None:
    """Make this (child) process a worker: Ctrl-C is the parent's to handle, and the process ends
    when its parent does, however the parent ends (kill -9 included)."""
    with contextlib.suppress(ValueError, OSError):  # (only possible in a main thread)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


@contextlib.contextmanager
def interrupts_ignored():
    """Ignore Ctrl-C while the block starts child processes: they inherit the ignoring (a spawned
    Python keeps SIGINT ignored too), so none can die of a KeyboardInterrupt before it has set its own
    handling. A Ctrl-C pressed meanwhile is lost. Does nothing outside the main thread."""
    try:
        before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _die_with_parent() -> None:
    """End this process when its parent ends: on Linux the kernel does it (PR_SET_PDEATHSIG); a thread
    also watches the parent (its sentinel where multiprocessing gives one, and a change of parent
    process id), for other systems and for a parent thread that is gone before the process."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    parent = multiprocessing.parent_process()
    sentinel = parent.sentinel if parent is not None else None
    threading.Thread(target=_watch_parent, args=(os.getppid(), sentinel), daemon=True,
                     name="tonghop-parent-watch").start()


def _watch_parent(ppid: int, sentinel) -> None:
    """Exit at once when the parent is gone. A forked sibling may hold the sentinel's pipe open,
    so the parent id is checked too (POSIX re-parents an orphan)."""
    from multiprocessing.connection import wait

    while True:
        if sentinel is not None:
            with contextlib.suppress(OSError, ValueError):
                if wait([sentinel], timeout=1.0):
                    os._exit(_ORPHAN_EXIT)
        else:
            time.sleep(1.0)
        if os.name == "posix" and os.getppid() != ppid:
            os._exit(_ORPHAN_EXIT)


_ORPHAN_EXIT = 70
_OUT_OF_MEMORY_EXIT = 71
_WATCHDOG_EVERY = 0.02  # seconds between two looks at the worker's memory (fallback cap)


def _limit_memory(memory_mb: int) -> str:
    """Cap the address space at what this process maps now plus `memory_mb`. Returns how: "rlimit"
    (RLIMIT_AS), "watchdog" (no `resource` module: a thread ends the process with exit code
    _OUT_OF_MEMORY_EXIT once its memory passes the bound) or "none" (neither is possible here).

    Relative, not absolute: a worker forked from a parent that imported pandas already maps a few
    hundred MB of address space (thread stacks, arenas), none of it used by the reader.
    """
    try:
        import resource
    except ImportError:
        resource = None
    size = _memory_size()
    if resource is not None and size is not None:
        try:
            limit = size + memory_mb * 2**20
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            return "rlimit"
        except (OSError, ValueError):
            pass
    if size is None:
        return "none"
    bound = size + memory_mb * 2**20

    def watch() -> None:
        while True:
            now = _memory_size()
            if now is not None and now > bound:
                with contextlib.suppress(OSError):
                    os.write(2, b"tonghop reader: memory allocation over the cap\n")
                os._exit(_OUT_OF_MEMORY_EXIT)
            time.sleep(_WATCHDOG_EVERY)

    threading.Thread(target=watch, daemon=True, name="tonghop-memory-watch").start()
    return "watchdog"


def _memory_size() -> int | None:
    """This process's memory in bytes as the cap counts it: its address space on Linux (what
    RLIMIT_AS limits), its committed memory on Windows; None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        pass
    if sys.platform == "win32":
        with contextlib.suppress(Exception):
            import ctypes
            from ctypes import wintypes

            class Counters(ctypes.Structure):
                _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + [
                    (name, ctypes.c_size_t) for name in (
                        "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage",
                        "QuotaPagedPoolUsage", "QuotaPeakNonPagedPoolUsage", "QuotaNonPagedPoolUsage",
                        "PagefileUsage", "PeakPagefileUsage", "PrivateUsage")]

            counters = Counters()
            counters.cb = ctypes.sizeof(counters)
            process = ctypes.windll.kernel32.GetCurrentProcess()
            if ctypes.windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):
                return int(counters.PrivateUsage)
    return None


_SAID: set[str] = set()


def _say_memory_cap(how: str, memory_mb: int) -> None:
    """Log, once per process and kind, that the readers' memory cap is not the address-space limit."""
    if how == "rlimit" or how in _SAID:
        return
    _SAID.add(how)
    if how == "watchdog":
        log.warning("reader memory cap: no 'resource' module here; a watchdog thread ends a reader whose "
                    "memory passes %d MB more than at its start (a burst between two looks may pass it)",
                    memory_mb)
    else:
        log.warning("reader memory cap: not available on this system; readers run without one (the "
                    "pre-scan's limits still bound what a file may ask)")
