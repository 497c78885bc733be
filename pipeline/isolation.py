"""Run a reading function over many files in one supervised worker process.

A reader fed an untrusted file can abort the whole process (python-calamine allocates the full grid of
a crafted sheet and Rust aborts on the failed allocation), hang, or eat all memory. `map_isolated`
runs `func(item)` for each item in ONE long-lived worker process, so such a file costs only itself:

- the worker's address space is capped (RLIMIT_AS, Linux) at what it already maps + `memory_mb`, so
  a runaway allocation fails (MemoryError, or an abort) instead of taking the machine;
- an item that runs longer than `timeout` seconds gets Failure("file-timeout"), the worker is killed
  and a new one carries on with the remaining items;
- a worker that dies (any signal or exit) gives its current item Failure("file-unreadable") and a new
  one carries on;
- an exception raised by `func`, BaseException included (pyo3's PanicException derives from it),
  comes back as Failure("file-unreadable", short repr).

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
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

__all__ = ["CRASHED", "Failure", "map_inline", "map_isolated"]

log = logging.getLogger("tonghop")

CRASHED = "chương trình đọc tệp bị dừng đột ngột"
OUT_OF_MEMORY = "tệp cần quá nhiều bộ nhớ để đọc"


@dataclass(frozen=True, slots=True)
class Failure:
    rule: str  # "file-unreadable" or "file-timeout"
    detail: str


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
    if isinstance(exc, MemoryError):
        return Failure("file-unreadable", OUT_OF_MEMORY)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Failure("file-unreadable", text if len(text) <= 200 else text[:197] + "...")


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
            self.process.start()
        finally:
            if self.errfile is not None:
                gc.unfreeze()
        child.close()  # else the parent's copy would keep the pipe open after the worker dies
        ready = False
        if self.conn.poll(max(60.0, timeout)):
            with contextlib.suppress(EOFError, OSError):
                ready = self.conn.recv() == "ready"
        if not ready:
            self.stop()
            raise RuntimeError("the reader worker process could not start")

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
            log.warning("reader died on %s (%s)%s", entry[0], _exit_text(self.process.exitcode),
                        self.stderr_tail())
            entry[1] = Failure("file-unreadable", CRASHED)
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
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    _die_with_parent()
    if errfile is not None:
        with contextlib.suppress(Exception):  # cosmetic: never a reason for the worker not to start
            os.dup2(errfile.fileno(), 2)
            if faulthandler.is_enabled():  # it writes to its own copy of the old stderr: follow fd 2
                faulthandler.enable(file=2)  # a number: sys.stderr may be a capture with no fd
    _limit_memory(memory_mb)
    outbox = _Outbox(conn, progress)
    # without it, results of quick items finished just before a slow one would wait for that one
    threading.Thread(target=outbox.flush_every, args=(_FLUSH_EVERY,), daemon=True).start()
    conn.send("ready")
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


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker if the supervisor dies (else a hung read is orphaned)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what this process maps now plus `memory_mb` (Linux; elsewhere no-op).

    Relative, not absolute: a worker forked from a parent that imported pandas already maps a few
    hundred MB of address space (thread stacks, arenas), none of it used by the reader.
    """
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = mapped + memory_mb * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass
