"""The one process pool of the job: tasks run by `jobs` worker processes, results are files.

`run_tasks(func, tasks, jobs, shared=...)` runs `func(task)` for every task, in worker processes when
`jobs` > 1 and there are enough tasks to pay for them, else in this process. Used to write the
feedback workbooks and the district workbooks. What it guarantees:

- the start method is fork where the system has it (the workers inherit `shared` and the imported
  modules), else spawn (Windows): then `func` is pickled by reference and `shared` is sent once to
  each worker, never with each task;
- the workers ignore Ctrl-C (this process handles it) and die with this process, even after a
  kill -9 of it (see pipeline.intake.isolation.become_worker);
- an exception or a Ctrl-C here, or a worker's failure, ends every worker at once (no task is left
  running or queued) before the exception goes on.

`shared` is what every task shares (the definition, the period, the frames of a district run): it is
in `SHARED` in each worker (and here while the tasks run), and cleared afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.intake.isolation import become_worker, interrupts_ignored

__all__ = ["SHARED", "context", "run_tasks"]

SHARED: dict = {}
_MIN_TASKS = 9  # fewer tasks run here: starting the workers would cost more than it saves


def context():
    """The multiprocessing context: fork where the system has it, else spawn."""
    methods = multiprocessing.get_all_start_methods()
    # fork: no re-import, and the workers share the parent's pages of the shared frames
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _start_worker(shared: dict) -> None:
    become_worker()
    _share(shared)


def _share(shared: dict) -> None:
    SHARED.clear()
    SHARED.update(shared)


def run_tasks(func: Callable[[Any], Any], tasks: list, jobs: int, *, shared: dict | None = None,
              on_done: Callable[[int], None] | None = None,
              meanwhile: Callable[[], None] | None = None) -> None:
    """Run func(task) for every task (results are discarded: tasks write files).

    `on_done(n)` is called here after the n-th task is done, in order; `meanwhile()` runs here while
    the workers are busy (in this process alone: before the tasks). Chunks of at most 8 tasks keep the
    last worker from finishing long after the others."""
    _share(shared or {})
    try:
        if jobs > 1 and len(tasks) >= _MIN_TASKS:
            _in_workers(func, tasks, jobs, shared or {}, on_done, meanwhile)
        else:
            if meanwhile:
                meanwhile()
            for n, task in enumerate(tasks, 1):
                func(task)
                if on_done:
                    on_done(n)
    finally:
        SHARED.clear()  # what the tasks shared is not kept after them


def _in_workers(func, tasks: list, jobs: int, shared: dict, on_done, meanwhile) -> None:
    from concurrent.futures import ProcessPoolExecutor

    ctx = context()
    forked = ctx.get_start_method() == "fork"
    size = max(1, min(8, len(tasks) // (4 * jobs)))
    chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    if forked:
        gc.freeze()  # forked workers' collectors then leave the pages they share with this process alone
    pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_start_worker, initargs=(shared,))
    try:
        # submit() starts the workers: none may see a Ctrl-C before it ignores them. Not map(): its
        # iterator cancels the pending futures when interrupted, and Python 3.11's manager thread then
        # fails (InvalidStateError, printed) giving the killed pool's error to a cancelled future
        with interrupts_ignored():
            futures = [pool.submit(_run_chunk, func, chunk) for chunk in chunks]
        if forked:
            gc.unfreeze()
            forked = False
        if meanwhile:
            meanwhile()
        n = 0
        for future, chunk in zip(futures, chunks, strict=True):
            future.result()
            for _ in chunk:
                n += 1
                if on_done:
                    on_done(n)
    except BaseException:
        _kill(pool)
        raise
    finally:
        if forked:
            gc.unfreeze()
        pool.shutdown(wait=True)


def _run_chunk(func: Callable, chunk: list) -> None:
    for task in chunk:
        func(task)


def _kill(pool) -> None:
    """End every worker of the pool now (a Ctrl-C, an error here or in a worker): the tasks they were
    running are abandoned with the run."""
    kill_workers = getattr(pool, "kill_workers", None)  # Python 3.14
    if kill_workers is not None:
        with contextlib.suppress(Exception):
            kill_workers()
            return
    processes: Iterable = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(5)


@contextlib.contextmanager
def fewer_collections():
    """Run the garbage collector's young collections every 200,000 allocations instead of 700 (and
    workers forked meanwhile inherit it). The job keeps millions of small objects alive (cells, rows,
    XML pieces) and makes few reference cycles: at 10,000 files the default thresholds cost about 2 s
    of the no-feedback job, mostly while the results of the reader workers come in."""
    before = gc.get_threshold()
    gc.set_threshold(200_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*before)
