"""The history store in a consolidation, end to end: what a run records, received times and deadlines,
reruns, changes between versions, comparison with earlier periods, the `history` and `diff` commands,
and the store's troubles (damaged, read-only, locked, killed mid-write) never costing the outputs."""

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import python_calamine as pc
from sample_inbox import make_samples, plausible

from pipeline.cli.commands import main
from pipeline.definition import load_definition
from pipeline.history.store import note_file, open_store
from pipeline.units import load_units
from pipeline.writers.outputs import FINDINGS_HEADERS, read_csv
from pipeline.writers.template import render_workbook

PERIOD = "2020-H1"
ROOT = Path(__file__).resolve().parents[1]
DEF = load_definition()
UNITS = load_units()
STATUS = "Tình hình nộp báo cáo"


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    inbox = tmp_path_factory.mktemp("samples") / "inbox"
    make_samples(inbox, PERIOD)
    return inbox


@pytest.fixture
def inbox(samples, tmp_path):
    """A copy of the sample inbox this test may change."""
    return Path(shutil.copytree(samples, tmp_path / "inbox"))


def _consolidate(inbox, out, *extra, period=PERIOD):
    return main(
        [
            "consolidate",
            "--inbox",
            str(inbox),
            "--out",
            str(out),
            "--period",
            period,
            "--quiet",
            "--no-feedback",
            *extra,
        ]
    )


def _sheet(path: Path, name: str) -> list[list]:
    return pc.CalamineWorkbook.from_path(str(path)).get_sheet_by_name(name).to_python()


def _book(out: Path, period: str = PERIOD) -> Path:
    return out / period / "thi-xa-dong-trieu.xlsx"


def _rows(status: list[list]) -> dict[str, dict]:
    """The status sheet's unit rows by unit code, keyed by header."""
    heads = status[2]
    return {r[0]: dict(zip(heads, r, strict=True)) for r in status[3:] if r[0]}


def _query(path: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


def _unit(code: str) -> dict:
    return UNITS.set_index("unit_code").loc[code].to_dict() | {"unit_code": code}


def _write_report(path: Path, code: str, period: str = PERIOD, **changed) -> None:
    values = plausible(code) | {k.replace("__", "."): v for k, v in changed.items()}
    render_workbook(DEF, path, period=period, unit=_unit(code), values=values)


def test_a_run_records_every_submission_value_and_finding(inbox, tmp_path, capsys):
    out = tmp_path / "out"
    assert _consolidate(inbox, out) == 0
    assert "Đã lưu vào lịch sử: lần tổng hợp số 1" in capsys.readouterr().out
    store = out / "lich-su.sqlite"
    run = _query(
        store,
        "SELECT run_id, tool_version, definition_id, definition_version, period, command, inbox, "
        "units_file, units_sha256, deadline, options, files, units_received, finished_at FROM runs",
    )
    assert len(run) == 1
    (
        run_id,
        tool,
        def_id,
        def_v,
        period,
        command,
        inbox_path,
        units_file,
        units_sha,
        deadline,
        options,
        files,
        received,
        finished,
    ) = run[0]
    assert (run_id, def_id, def_v, period, command) == (1, "tthtcd-6thang", 1, PERIOD, "consolidate")
    assert Path(inbox_path) == inbox.resolve() and tool and finished
    assert units_sha == hashlib.sha256(Path(units_file).read_bytes()).hexdigest()
    assert deadline == "2020-06-20" and json.loads(options)["feedback"] is False
    assert (files, received) == (20, 18)
    statuses = dict(_query(store, "SELECT status, count(*) FROM submissions GROUP BY status"))
    assert statuses == {"used": 18, "superseded": 1, "duplicate": 1}
    # superseded_by names the file used instead
    assert _query(
        store,
        "SELECT s.file, o.file FROM submissions s JOIN submissions o "
        "ON o.submission_id = s.superseded_by ORDER BY s.file",
    ) == [
        ("07078-trang-luong-lan-1.xlsx", "07078-trang-luong-lan-2.xlsx"),
        ("thu-gui-lai/07078-trang-luong-lan-2.xlsx", "07078-trang-luong-lan-2.xlsx"),
    ]
    # every value read, with its source cell: the famous "8.28"
    got = _query(
        store,
        "SELECT v.value, v.raw, v.cell FROM cell_values v JOIN submissions s USING (submission_id)"
        " WHERE s.unit_code = '07093' AND v.field = 'total.participants'",
    )
    assert got == [(828.0, "8.28", "D16")]
    n_values = _query(store, "SELECT count(*) FROM cell_values")[0][0]
    assert n_values > 20 * 50  # every cell but those left blank
    assert _query(
        store, "SELECT count(*) FROM cell_values WHERE value IS NULL AND text IS NULL AND raw IS NULL"
    ) == [(0,)]
    # whether each value counted: 1 or 0 (Việt Dân's left-out figures), NULL where not said; integers
    counted = dict(_query(store, "SELECT typeof(counted) || ':' || coalesce(counted, ''), count(*) "
                                 "FROM cell_values GROUP BY 1"))
    assert set(counted) <= {"integer:1", "integer:0", "null:"}
    assert counted["integer:1"] and counted["integer:0"]
    findings = read_csv(out / PERIOD / "findings.csv", FINDINGS_HEADERS)
    assert _query(store, "SELECT count(*) FROM findings")[0][0] == len(findings)
    # the district figures, as "Tổng hợp" shows them; the fields, so the store reads on its own
    assert (
        _query(store, "SELECT value, units FROM district_figures WHERE field = 'total.participants'")[0][1]
        == 17  # Việt Dân's participants are left out: a row with more women than participants
    )
    assert ("Kết quả hoạt động", "lượt người") in _query(
        store, "SELECT sheet, unit FROM fields WHERE field = 'total.participants'"
    )
    manifest = json.loads((out / PERIOD / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["history"] == {"store": str(store), "run": 1, "problem": None}
    assert "store" in manifest["timings"]


def test_received_time_is_the_first_sighting_never_the_modification_time(inbox, tmp_path):
    out = tmp_path / "out"
    assert _consolidate(inbox, out) == 0
    first = _query(
        out / "lich-su.sqlite", "SELECT received_at FROM submissions WHERE file = '07093-duc-chinh.xlsx'"
    )
    later = dt.datetime(2031, 1, 1).timestamp()
    os.utime(inbox / "07093-duc-chinh.xlsx", (later, later))  # copied or touched: the time changes
    assert _consolidate(inbox, out) == 0
    both = _query(
        out / "lich-su.sqlite", "SELECT received_at FROM submissions WHERE file = '07093-duc-chinh.xlsx'"
    )
    assert both == first * 2 and not both[0][0].startswith("2031")
    rows = _rows(_sheet(_book(out), STATUS))
    shown = rows["07093"]["Ngày nhận"]
    assert shown == dt.datetime.fromisoformat(first[0][0]).astimezone().replace(tzinfo=None)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_email_date_is_the_received_time_and_lateness_is_shown(inbox, tmp_path, capsys):
    out = tmp_path / "out"
    store = out / "lich-su.sqlite"
    with open_store(store) as s, s.transaction() as conn:  # as `tonghop fetch` records a message's date
        note_file(
            conn,
            _sha(inbox / "07093-duc-chinh.xlsx"),
            seen_at="2020-07-01T08:00:00+07:00",
            received_at="2020-06-19T18:00:00+07:00",
            via="email",
        )
        note_file(
            conn,
            _sha(inbox / "07096-trang-an.xlsx"),
            seen_at="2020-07-01T08:00:00+07:00",
            received_at="2020-06-23T18:00:00+07:00",
            via="email",
        )
    assert _consolidate(inbox, out, "--deadline", "20/06/2020") == 0
    assert "Nộp đúng hạn (20/06/2020): 1/18 đơn vị đã nộp." in capsys.readouterr().out
    status = _sheet(_book(out), STATUS)
    rows = _rows(status)
    local = dt.datetime.fromisoformat("2020-06-19T18:00:00+07:00").astimezone().replace(tzinfo=None)
    assert (rows["07093"]["Hạn nộp"], rows["07093"]["Ngày nhận"], rows["07093"]["Đúng hạn"]) == (
        dt.date(2020, 6, 20),
        local,
        "Đúng hạn",
    )
    assert rows["07096"]["Đúng hạn"] == "Muộn 3 ngày"
    assert rows["07069"]["Đúng hạn"].startswith("Muộn ")  # first seen by this run, after the deadline
    assert rows["07111"]["Đã nộp"] == "Chưa nộp" and rows["07111"]["Đúng hạn"].startswith("Quá hạn ")
    assert "1 đơn vị nộp đúng hạn (hạn nộp 20/06/2020)" in status[0][0]
    summary = _sheet(_book(out), "Tổng hợp")
    assert any("Số đơn vị đã báo cáo: 18/21 (đúng hạn: 1)" in str(c) for r in summary[:12] for c in r)
    assert _query(
        store,
        "SELECT late_days FROM submissions WHERE file IN ('07093-duc-chinh.xlsx', "
        "'07096-trang-an.xlsx') ORDER BY file",
    ) == [(0,), (3,)]


def test_reruns_keep_history_and_the_workbook_names_its_run(inbox, tmp_path, capsys):
    out = tmp_path / "out"
    assert _consolidate(inbox, out) == 0
    assert _consolidate(inbox, out) == 0
    summary = _sheet(_book(out), "Tổng hợp")
    assert any("lần tổng hợp số 2, tệp lịch sử lich-su.sqlite" in str(c) for r in summary[:12] for c in r)
    capsys.readouterr()
    assert main(["history", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 lần tổng hợp" in text and "tổng hợp  2020-H1" in text and "18/21" in text
    assert main(["history", "07078", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Xã Tràng Lương (07078): 6 lần nộp")
    assert "được tổng hợp" in text and "bị thay bằng tệp mới hơn «07078-trang-luong-lan-2.xlsx»" in text
    assert main(["history", "99999", "--out", str(out)]) == 0
    assert "chưa có lần nộp nào của đơn vị mã 99999" in capsys.readouterr().out
    assert main(["history", "--out", str(tmp_path / "nowhere")]) == 1
    assert "Chưa có tệp lịch sử" in capsys.readouterr().err


def test_a_resubmission_lists_the_cells_that_changed(inbox, tmp_path):
    for name in ("07078-trang-luong-lan-1.xlsx", "07078-trang-luong-lan-2.xlsx"):
        (inbox / name).unlink()
    shutil.rmtree(inbox / "thu-gui-lai")
    _write_report(inbox / "07078-lan-1.xlsx", "07078", health__participants=350, report_date="05/06/2020")
    _write_report(inbox / "07078-lan-2.xlsx", "07078", health__participants=400, report_date="18/06/2020")
    out = tmp_path / "out"
    # with feedback workbooks: the ward's copy lists the changes too
    assert main(["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD, "--quiet"]) == 0
    row = _rows(_sheet(_book(out), STATUS))["07078"]
    change = row["Các ô thay đổi so với tệp trước"]
    assert change.startswith("So với tệp «07078-lan-1.xlsx»: ")
    assert "Thông tin chung!B23: 05/06/2020 → 18/06/2020" in change
    assert "Kết quả hoạt động!D9: 350 → 400" in change
    feedback = _sheet(out / PERIOD / "feedback" / "07078-trang-luong.xlsx", "Góp ý")
    at = next(i for i, r in enumerate(feedback) if str(r[0]).startswith("Các ô đã thay đổi"))
    assert feedback[at][0] == "Các ô đã thay đổi so với tệp «07078-lan-1.xlsx» (3 ô)"
    listed = [r[1:6] for r in feedback[at + 2 :]]
    assert ["Kết quả hoạt động", "D9", DEF.fields["health.participants"].label, "350", "400"] in listed
    assert ["Kết quả hoạt động", "D16", DEF.fields["total.participants"].label] == listed[2][:3]
    wb = openpyxl.load_workbook(out / PERIOD / "feedback" / "07078-trang-luong.xlsx")
    link = next(c for row in wb["Góp ý"].iter_rows() for c in row if c.value == "D9" and c.hyperlink)
    assert link.hyperlink.location == "'Kết quả hoạt động'!D9"


def test_a_file_replaced_since_the_last_run_lists_the_cells_that_changed(inbox, tmp_path):
    out = tmp_path / "out"
    _write_report(inbox / "07093-duc-chinh.xlsx", "07093", households=2379)
    assert _consolidate(inbox, out) == 0
    (inbox / "07093-duc-chinh.xlsx").unlink()
    _write_report(inbox / "07093-duc-chinh-sua.xlsx", "07093", households=2397)
    assert _consolidate(inbox, out) == 0
    row = _rows(_sheet(_book(out), STATUS))["07093"]
    assert row["Các ô thay đổi so với tệp trước"] == (
        "So với tệp «07093-duc-chinh.xlsx» đã tổng hợp lần trước: Thông tin chung!B9: 2.379 → 2.397"
    )
    assert _rows(_sheet(_book(out), STATUS))["07069"]["Các ô thay đổi so với tệp trước"] == ""  # same file


def test_figures_are_compared_with_the_earlier_period(samples, tmp_path):
    before, now, out = tmp_path / "2019-H2", tmp_path / "2020-H1", tmp_path / "out"
    make_samples(before, "2019-H2")
    shutil.copytree(samples, now)
    # a consistent report (learners = the total of participants), else its participants are left out
    total = plausible("07093")["total.participants"]
    _write_report(before / "07093-duc-chinh.xlsx", "07093", period="2019-H2", health__participants=100,
                  health__classes=2, learners=total + 100)
    _write_report(now / "07093-duc-chinh.xlsx", "07093", health__participants=350, health__classes=2,
                  learners=total + 350)
    assert _consolidate(before, out, period="2019-H2") == 0
    first = _sheet(_book(out, "2019-H2"), "Tổng hợp")
    assert max(len(r) for r in first) == 5  # no history yet: no comparison columns
    assert _consolidate(now, out) == 0
    findings = read_csv(out / PERIOD / "findings.csv", FINDINGS_HEADERS)
    mine = findings[findings["rule"] == "change-vs-previous"]
    assert mine[["unit_code", "cell", "severity"]].values.tolist() == [["07093", "D9", "Cảnh báo"]]
    assert (
        "ghi 350, tăng 250 % so với kỳ trước, 6 tháng cuối năm 2019 (100). Đề nghị kiểm tra lại"
        in mine["message"].iloc[0]
    )
    summary = _sheet(_book(out), "Tổng hợp")
    head = next(r for r in summary if r[:3] == ["TT", "Nội dung", "Số liệu"])
    assert head[5:7] == ["Kỳ trước, 6 tháng cuối năm 2019", "Tăng, giảm"]
    households = next(r for r in summary if r[1] == "Số hộ")
    assert households[2] == households[5] and households[6] == "không đổi"
    block = next(i for i, r in enumerate(summary) if str(r[0]).startswith("So sánh với kỳ trước"))
    health = next(r for r in summary[block:] if r[1] == "Chuyên đề Giáo dục sức khỏe")
    assert health[3].startswith("tăng ") and health[3].endswith(")")


def test_without_a_store_nothing_is_written_or_read(inbox, tmp_path, capsys):
    out = tmp_path / "out"
    assert _consolidate(inbox, out, "--no-store") == 0
    assert not (out / "lich-su.sqlite").exists()
    assert "lịch sử" not in capsys.readouterr().out
    assert json.loads((out / PERIOD / "manifest.json").read_text(encoding="utf-8"))["history"]["run"] is None


def test_a_store_elsewhere(inbox, tmp_path):
    out, store = tmp_path / "out", tmp_path / "chung" / "lich-su-phong.sqlite"
    assert _consolidate(inbox, out, "--store", str(store)) == 0
    assert store.exists() and not (out / "lich-su.sqlite").exists()
    assert main(["history", "--store", str(store)]) == 0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_store_leaves_it_untouched_and_still_writes_the_outputs(inbox, tmp_path, capsys):
    out = tmp_path / "out"
    assert _consolidate(inbox, out) == 0
    store = out / "lich-su.sqlite"
    data = bytearray(store.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\x5a" * 4096
    store.write_bytes(bytes(data))
    before = _digest(store)
    shutil.rmtree(out / PERIOD)
    capsys.readouterr()
    assert _consolidate(inbox, out) == 1  # written, but needs attention
    err = capsys.readouterr().err
    assert "bị hỏng" in err and "Kết quả vẫn được ghi đầy đủ" in err and "Traceback" not in err
    assert _book(out).exists() and (out / PERIOD / "values.csv").exists()
    assert _digest(store) == before
    assert sorted(p.name for p in out.iterdir() if "lich-su" in p.name) == ["lich-su.sqlite"]


def test_a_store_locked_by_another_program_still_writes_the_outputs(inbox, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert _consolidate(inbox, out) == 0
    other = sqlite3.connect(out / "lich-su.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. a consolidation of another period writing its history
    monkeypatch.setattr("pipeline.history.store.BUSY_MS", 50)
    try:
        capsys.readouterr()
        assert _consolidate(inbox, out) == 1
    finally:
        other.rollback()
        other.close()
    assert "đang được một chương trình khác dùng" in capsys.readouterr().err
    assert _query(out / "lich-su.sqlite", "SELECT count(*) FROM runs") == [(1,)]


def test_a_run_refused_for_another_run_on_the_folder_leaves_the_store_alone(inbox, tmp_path, capsys):
    from filelock import FileLock

    out = tmp_path / "out"
    assert _consolidate(inbox, out) == 0
    before = _digest(out / "lich-su.sqlite")
    with FileLock(str(out / f".{PERIOD}.lock")):
        assert _consolidate(inbox, out) == 3
    assert "Một lần chạy khác" in capsys.readouterr().err
    assert _digest(out / "lich-su.sqlite") == before


@pytest.fixture
def shared_tmp():
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="tonghop-history-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_store_on_a_read_only_location_still_writes_the_outputs(samples, shared_tmp, capsys):
    from test_store import unprivileged

    try:
        with unprivileged():
            (ROOT / "schemas" / "tthtcd-6thang.yaml").read_bytes()
    except PermissionError:
        pytest.skip("the checkout is not readable by an unprivileged user (a clone inside a private "
                    "folder, e.g. mktemp -d): the run as that user could not read its definition")
    inbox = Path(shutil.copytree(samples, shared_tmp / "inbox"))
    for p in inbox.rglob("*"):  # files written atomically are private to their writer (mkstemp)
        p.chmod(0o755 if p.is_dir() else 0o644)
    out, locked = shared_tmp / "out", shared_tmp / "chi-doc"
    out.mkdir()
    out.chmod(0o777)
    locked.mkdir()
    locked.chmod(0o555)
    assert (
        _consolidate(inbox, out, "--store", str(locked / "lich-su.sqlite"), "--jobs", "1") == 0
    )  # warm up as root
    (locked / "lich-su.sqlite").chmod(0o444)
    shutil.rmtree(out)  # what the warm-up wrote as root (lock file included) the next run could not write
    out.mkdir()
    out.chmod(0o777)
    capsys.readouterr()
    with unprivileged():
        code = _consolidate(inbox, out, "--store", str(locked / "lich-su.sqlite"), "--jobs", "1")
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Không ghi được vào tệp lịch sử" in err and "--store" in err
    assert _book(out).exists()


KILLED_RUN = """
import os, sys, time
import pipeline.history.runs as history
real = history.write_run
def stalled(*args, **kwargs):
    got = real(*args, **kwargs)
    open(sys.argv[1], "w").close()
    time.sleep(600)
    return got
history.write_run = stalled
from pipeline.cli.commands import main
sys.exit(main(sys.argv[2:]))
"""


def test_kill_9_during_the_store_write_leaves_it_intact_and_a_rerun_succeeds(inbox, tmp_path):
    out = tmp_path / "out"
    assert _consolidate(inbox, out) == 0
    store = out / "lich-su.sqlite"
    counts = (
        "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM submissions), (SELECT count(*) FROM "
        "cell_values), (SELECT count(*) FROM files)"
    )
    before = _query(store, counts)
    ready = tmp_path / "inside-the-transaction"
    args = [
        "consolidate",
        "--inbox",
        str(inbox),
        "--out",
        str(out),
        "--period",
        PERIOD,
        "--quiet",
        "--no-feedback",
        "--jobs",
        "1",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(ready), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(12000):  # up to 10 minutes on a loaded machine; the run takes seconds
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), "the run never reached the store's transaction"
        proc.kill()  # SIGKILL: no cleanup of any kind
    finally:
        proc.kill()
        proc.wait()
    with open_store(store, check=True) as s:
        assert s.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert _query(store, counts) == before
    assert _consolidate(inbox, out) == 0
    assert _query(store, "SELECT count(*) FROM runs") == [(2,)]


def test_the_history_steps_handle_an_inbox_with_nothing_to_read(tmp_path):
    """An empty inbox (the first run of a period) gives empty frames: every step copes and the run is
    recorded, every unit overdue."""
    from pipeline.findings import make_findings
    from pipeline.history import steps as hs
    from pipeline.history.runs import RunHistory

    hist = RunHistory.open(tmp_path / "lich-su.sqlite", DEF, PERIOD)
    subs = pd.DataFrame(
        columns=[
            "period",
            "unit_code",
            "unit_name",
            "file",
            "path",
            "sha256",
            "mtime",
            "report_date",
            "received",
            "chosen",
            "superseded",
        ]
    )
    values = pd.DataFrame(columns=["submission", "field", "raw", "cell", "value", "text"])
    findings = make_findings([], DEF.rules)
    status = hs.statuses(subs, findings, PERIOD)
    changes, sources = hs.version_changes(hist, DEF, subs, status, values)
    assert status.empty and changes.empty and hs.change_findings(hist, DEF, PERIOD, subs, values).empty
    units = UNITS.assign(submission=None, file=None, status="Chưa nộp")
    shown = hs.annotate_units(
        units, pd.Series(dtype=object), dt.date(2020, 6, 20), dt.date(2020, 7, 1), changes, sources
    )
    assert set(shown["lateness"]) == {"Quá hạn 11 ngày"} and set(shown["changes"]) == {""}
    run = {
        "started_at": "2020-07-01T08:00:00+07:00",
        "tool_version": "x",
        "period": PERIOD,
        "command": "consolidate",
        "deadline": dt.date(2020, 6, 20),
    }
    district = pd.DataFrame(columns=["district_code", "field", "value", "units"])
    got = hs.record_run(
        hist,
        run,
        books=[],
        names=[],
        subs=subs,
        status=status,
        values=values,
        findings=findings,
        district=district,
        received_by_file=pd.Series(dtype=object),
        run_id=None,
    )
    assert (got, hist.problem) == (1, None)
    hist.close()
