"""Running `tonghop` in a process of its own, as a user runs it, for the tests that send it signals,
kill it, take away its rights or its modules. Nothing here is timed: every wait is for a condition,
with a deadline far beyond what a loaded machine needs.

`start(args, ...)` runs `python -m` a small driver that may first replace functions of the pipeline
with `block` (which leaves a marker file named after the function and the process id, then sleeps),
so that a test knows the run, or one of its worker processes, has reached that point.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DRIVER = """
import os, sys, time, importlib
marks = os.environ.get("TONGHOP_TEST_MARKS", "")
def block(name):
    def blocked(*args, **kwargs):
        open(os.path.join(marks, name + "-" + str(os.getpid())), "w").close()
        time.sleep(600)
    return blocked
for target in filter(None, os.environ.get("TONGHOP_TEST_BLOCK", "").split(",")):
    module, name = target.rsplit(".", 1)
    setattr(importlib.import_module(module), name, block(name))
from pipeline.cli.commands import main
sys.exit(main(sys.argv[1:]))
"""


def drop_file_rights() -> None:
    """(preexec_fn) Make file permissions apply to this child even when it runs as root: drop
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its capability bounding set."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")


def can_drop_file_rights() -> bool:
    if sys.platform != "linux":
        return False
    try:
        proc = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=drop_file_rights, check=False,
                              capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def start(args: list[str], *, block: tuple[str, ...] = (), marks: Path | None = None, env: dict | None = None,
          preexec=None, session: bool = True) -> psutil.Popen:
    """Start `tonghop <args>` (stdout and stderr captured, in a new session when `session`, so that a
    test can send Ctrl-C to the whole process group as a terminal does)."""
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full.get("PYTHONPATH", "")]))
    full["TONGHOP_TEST_BLOCK"] = ",".join(block)
    full["TONGHOP_TEST_MARKS"] = str(marks or "")
    full.update(env or {})
    return psutil.Popen([sys.executable, "-c", DRIVER, *args], cwd=ROOT, env=full, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, start_new_session=session, preexec_fn=preexec)


def run(args: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    proc = start(args, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(condition, what: str, deadline: float = 180.0):
    """Poll `condition()` until it is truthy; fail with `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"waited {deadline:g} s for {what}")
        time.sleep(0.05)


def marks_of(marks: Path, name: str) -> set[int]:
    """Process ids that reached the blocked function `name`."""
    return {int(p.name.rsplit("-", 1)[1]) for p in marks.glob(f"{name}-*")}


def gone(pids, deadline: float = 60.0) -> bool:
    """Whether every process in `pids` has ended (zombies count as ended) before the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        alive = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        if not alive:
            return True
        time.sleep(0.1)
    return False
