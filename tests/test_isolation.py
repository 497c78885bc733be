"""pipeline.intake.isolation: crashes, hangs, memory blow-ups and exceptions cost only their own item."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from pipeline.intake.isolation import CRASHED, DAMAGED, OUT_OF_MEMORY, Failure, map_inline, map_isolated

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals and RLIMIT_AS are POSIX")


class Panic(BaseException):
    """Like pyo3's PanicException: not an Exception."""


# The functions run in the worker are top-level so that a spawned worker could import them too.

def double(item):
    return item * 2


def misbehave(item):
    if item == "abort":
        os.abort()
    if item == "exit":
        os._exit(3)
    if item == "sys.exit":
        sys.exit(2)
    if item == "sleep":
        time.sleep(60)
    if item == "4GB":
        return len(bytearray(4 << 30))
    if item == "panic":
        raise Panic("called `Result::unwrap()` on an `Err` value")
    if item == "value-error":
        raise ValueError("bad")
    if item == "unpicklable":
        return lambda: None
    return item * 2


def read_with_calamine(path):
    import python_calamine

    wb = python_calamine.CalamineWorkbook.from_path(path)
    return [len(wb.get_sheet_by_name(n).to_python(skip_empty_area=False)) for n in wb.sheet_names]


def workers_alive() -> list[psutil.Process]:
    """Child processes, zombies included, except multiprocessing's resource tracker (one per parent)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() == psutil.STATUS_ZOMBIE or "resource_tracker" not in " ".join(child.cmdline()):
                alive.append(child)
    return alive


def no_children_left() -> bool:
    deadline = time.monotonic() + 5
    while workers_alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_abort_costs_only_its_item_and_order_is_kept():
    items = [*range(10), "abort", *range(10, 20)]
    out = list(map_isolated(misbehave, items, batch=8))
    assert [i for i, _ in out] == items
    assert dict(out)["abort"] == Failure("file-unreadable", CRASHED)
    assert all(r == i * 2 for i, r in out if i != "abort")
    assert no_children_left()


def test_items_finished_before_a_crash_in_the_same_batch_are_not_lost():
    # the worker sends results in groups: those finished but unsent when it dies are read again
    items = [*range(50), "exit", *range(50, 60), "abort", 60]
    out = dict(map_isolated(misbehave, items, batch=64))
    assert out["exit"] == out["abort"] == Failure("file-unreadable", CRASHED)
    assert all(out[i] == i * 2 for i in range(61))


def test_timeout_costs_only_its_item():
    # 2 s: far more than a trivial item takes, even on a loaded machine
    out = list(map_isolated(misbehave, [1, "sleep", 2, 3], timeout=2))
    assert out == [(1, 2), ("sleep", Failure("file-timeout", "2 giây")), (2, 4), (3, 6)]
    assert no_children_left()


def test_runaway_allocation_fails_instead_of_taking_the_machine():
    out = list(map_isolated(misbehave, [1, "4GB", 2], memory_mb=512))
    assert out[0] == (1, 2) and out[2] == (2, 4)
    assert isinstance(out[1][1], Failure) and out[1][1].rule == "file-unreadable"
    assert out[1][1].detail in (OUT_OF_MEMORY, CRASHED)


@pytest.mark.parametrize("item", ["panic", "value-error", "sys.exit", "exit"])
def test_exceptions_and_exits_become_failures(item):
    out = list(map_isolated(misbehave, [1, item, 2]))
    assert out[0] == (1, 2) and out[2] == (2, 4)
    failure = out[1][1]
    assert isinstance(failure, Failure) and failure.rule == "file-unreadable"
    assert failure.detail in (DAMAGED, CRASHED)  # Vietnamese; the program's own words go to the log
    if item == "panic":
        assert failure.cause == "Panic: called `Result::unwrap()` on an `Err` value"


def test_unpicklable_result_becomes_a_failure():
    out = list(map_isolated(misbehave, [1, "unpicklable", 2]))
    assert out[0] == (1, 2) and out[2] == (2, 4)
    assert out[1][1].rule == "file-unreadable" and "kết quả không gửi được" in out[1][1].detail


def wait_then_mark(item):
    """Item ("wait", folder): mark that it started, sleep, mark that it ended. Else item * 2."""
    if isinstance(item, tuple):
        folder = Path(item[1])
        (folder / "started").touch()
        time.sleep(60)
        (folder / "ended").touch()
        return None
    return item * 2


def test_early_close_leaves_no_child_alive(tmp_path):
    gen = map_isolated(wait_then_mark, [1, 2, ("wait", str(tmp_path)), 3], timeout=120)
    assert next(gen) == (1, 2)
    # finished results come back while a slow item runs (not only once it is done)
    assert not (tmp_path / "ended").exists()
    assert workers_alive()  # the worker is running
    gen.close()
    assert no_children_left()


def test_many_items_in_order_across_batches():
    items = list(range(1000))
    assert list(map_isolated(double, items, batch=7)) == list(map_inline(double, items))
    assert list(map_isolated(double, [])) == []
    assert list(map_isolated(double, iter(range(3)), batch=1)) == [(0, 0), (1, 2), (2, 4)]


def test_many_items_come_back_in_order():
    # the overhead per item is measured by `make bench`, not here: speed is never a unit test
    items = [f"/srv/inbox/{i:05d}-phuong.xlsx" for i in range(5000)]
    assert list(map_isolated(str.upper, items)) == list(map_inline(str.upper, items))


def test_isolation_holds_when_calamine_aborts(tmp_path, caplog):
    """A 1.9 KB sheet with A1 and XFD1048576 makes python-calamine abort the process: here, the worker."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                   'content-types"><Default Extension="xml" ContentType="application/xml"/></Types>')
        z.writestr("_rels/.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                   f'relationships"><Relationship Id="rId1" Type="{rel}/officeDocument" '
                   'Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", f'<workbook xmlns="{ns}" xmlns:r="{rel}"><sheets>'
                   '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/'
                   f'package/2006/relationships"><Relationship Id="rId1" Type="{rel}/worksheet" '
                   'Target="worksheets/sheet1.xml"/></Relationships>')
        z.writestr("xl/worksheets/sheet1.xml", f'<worksheet xmlns="{ns}"><sheetData><row r="1"><c r="A1">'
                   '<v>1</v></c></row><row r="1048576"><c r="XFD1048576"><v>2</v></c></row></sheetData>'
                   "</worksheet>")
    assert bad.stat().st_size < 2000
    good = tmp_path / "good.xlsx"
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(good))
    wb.add_worksheet("S").write("B2", 5)
    wb.close()
    with caplog.at_level(logging.WARNING, logger="tonghop"):
        out = list(map_isolated(read_with_calamine, [good, bad, good], memory_mb=1024))
    assert out == [(good, [2]), (bad, Failure("file-unreadable", CRASHED)), (good, [2])]
    assert "SIGABRT" in caplog.text and "memory allocation" in caplog.text


def test_spawned_worker_when_fork_is_unavailable(monkeypatch):
    import multiprocessing

    import pipeline.intake.isolation as isolation

    monkeypatch.setattr(isolation, "_context", lambda: multiprocessing.get_context("spawn"))
    out = list(map_isolated(misbehave, [1, "abort", 2, "panic", 3], timeout=60))
    assert [r for _, r in out][::2] == [2, 4, 6]
    assert out[1][1] == Failure("file-unreadable", CRASHED) and out[3][1].rule == "file-unreadable"
    assert no_children_left()


def test_worker_dies_with_its_supervisor(tmp_path):
    """The supervisor kills itself (kill -9) once its worker has started reading: the worker goes too."""
    script = tmp_path / "supervisor.py"
    marker = tmp_path / "worker.pid"
    script.write_text(
        "import os, sys, time, threading\n"
        "from pipeline.intake.isolation import map_isolated\n"
        "def hang(item):\n"
        f"    with open({str(marker) + '.tmp'!r}, 'w') as f: f.write(str(os.getpid()))\n"
        f"    os.rename({str(marker) + '.tmp'!r}, {str(marker)!r})\n"  # whole, or not there
        "    time.sleep(600)\n"
        "def kill_when_started():\n"
        f"    while not os.path.exists({str(marker)!r}): time.sleep(0.01)\n"
        "    os.kill(os.getpid(), 9)\n"
        "threading.Thread(target=kill_when_started, daemon=True).start()\n"
        "next(map_isolated(hang, [1], timeout=600))\n")
    proc = psutil.Popen([sys.executable, str(script)], cwd=Path(__file__).resolve().parents[1])
    assert proc.wait(300) == -9
    worker = int(marker.read_text())
    deadline = time.monotonic() + 60
    while psutil.pid_exists(worker) and psutil.Process(worker).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the worker outlived its supervisor"
        time.sleep(0.05)


def test_map_inline_catches_base_exceptions_but_not_interrupts():
    out = list(map_inline(misbehave, [1, "panic", "value-error", 2]))
    assert out[0] == (1, 2) and out[3] == (2, 4)
    assert out[1][1].rule == out[2][1].rule == "file-unreadable"

    def interrupted(item):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(map_inline(interrupted, [1]))
    with pytest.raises(SystemExit):
        list(map_inline(misbehave, ["sys.exit"]))
