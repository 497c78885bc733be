"""Ctrl-C and kill -9, in every command and at every stage with worker processes: one Vietnamese line,
exit 130, no traceback from the main process or a worker, the previous outputs as they were, no lock
or staging folder left, and no worker process outliving the run. Each run is a process of its own;
the tests wait for conditions (a worker has started its task), never for a time."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest
from processes import gone, marks_of, start, wait_for
from sample_inbox import make_samples

from pipeline.cli.commands import main
from pipeline.units import load_units

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals to a process group are POSIX")

PERIOD = "2020-H1"
INTERRUPTED = ("Đã dừng theo yêu cầu (Ctrl-C). Không có tệp nào bị ghi dở; "
               "kết quả lần chạy trước vẫn giữ nguyên.")
# stage -> (the function a worker blocks in, how many processes reach it, extra arguments)
STAGES = {
    "read": ("pipeline.intake.reading.read_workbook", 1, ["--no-feedback"]),
    "feedback": ("pipeline.writers.feedback.render", 2, []),
    "district": ("pipeline.writers.district.write_district_workbook", 2,
                 ["--no-feedback", "--units", "{units}"]),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("interrupts")
    make_samples(base / "inbox", PERIOD)
    units = load_units().drop(columns=["key", "slug", "full_name"])
    units["district_code"] = "9" + units["unit_code"]  # each unit its own district: 21 tasks for the pool
    units["district_name"] = "Huyện " + units["unit_name"]
    units.to_csv(base / "units.csv", index=False, encoding="utf-8-sig")
    return {"inbox": base / "inbox", "units": base / "units.csv"}


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def consolidate_args(setup: dict, out: Path, stage: str) -> list[str]:
    extra = [a.format(units=setup["units"]) for a in STAGES[stage][2]]
    return ["consolidate", "--inbox", str(setup["inbox"]), "--out", str(out), "--period", PERIOD, "--quiet",
            "--jobs", "2", *extra]


def started(proc: psutil.Popen, marks: Path, function: str, count: int) -> list[int]:
    """Wait until `count` processes of the run are in `function`; return every process of the run."""
    name = function.rsplit(".", 1)[1]
    wait_for(lambda: len(marks_of(marks, name)) >= count or proc.poll() is not None,
             f"{count} processes in {name}")
    assert proc.poll() is None, proc.communicate()
    return [proc.pid] + [c.pid for c in proc.children(recursive=True)]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_kill_9_of_the_main_process_takes_its_workers_with_it(setup, tmp_path, stage):
    marks = tmp_path / "marks"
    marks.mkdir()
    function, count, _ = STAGES[stage]
    proc = start(consolidate_args(setup, tmp_path / "out", stage), block=(function,), marks=marks)
    try:
        family = started(proc, marks, function, count)
        workers = marks_of(marks, function.rsplit(".", 1)[1]) - {proc.pid}
        assert workers and set(workers) <= set(family)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
        assert gone(family), [psutil.Process(p).cmdline() for p in family if psutil.pid_exists(p)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_ctrl_c_during_consolidate(setup, tmp_path, stage):
    out = tmp_path / "out"
    assert main(consolidate_args(setup, out, stage)) == 0
    before = hashes(out)
    marks = tmp_path / "marks"
    marks.mkdir()
    function, count, _ = STAGES[stage]
    proc = start(consolidate_args(setup, out, stage), block=(function,), marks=marks)
    try:
        family = started(proc, marks, function, count)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to the whole process group
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert stderr.strip() == INTERRUPTED and "Traceback" not in stdout
    assert hashes(out) == before
    # no lock file, no staging folder
    assert sorted(p.name for p in out.iterdir()) == [PERIOD, "lich-su.sqlite"]
    assert gone(family)


@pytest.mark.parametrize("command", ["check", "templates"])
def test_ctrl_c_during_check_and_templates(setup, tmp_path, command):
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "mau"
    if command == "check":
        args = ["check", *map(str, sorted(setup["inbox"].glob("*.xlsx")))]
        function = "pipeline.intake.reading.read_workbook"
    else:
        args = ["templates", "--period", PERIOD, "--out", str(out)]
        assert main(args) == 0
        function = "pipeline.writers.template.render_workbook"
    before = hashes(out) if out.exists() else {}
    proc = start(args, block=(function,), marks=marks)
    try:
        family = started(proc, marks, function, 1)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert stderr.strip() == INTERRUPTED and "Traceback" not in stdout
    assert (hashes(out) if out.exists() else {}) == before
    assert gone(family)
