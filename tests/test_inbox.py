"""pipeline.intake.inbox and the run around it: what an inbox holds that is not a plain readable workbook
(links, special files, unreadable files and folders, tonghop's own outputs) is one finding each, never
a hang, a crash or silence, and never read from outside the inbox."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import openpyxl
import pytest
from processes import can_drop_file_rights, drop_file_rights, run
from sample_inbox import plausible

from pipeline.cli.commands import main
from pipeline.definition import load_definition
from pipeline.intake.inbox import discover, take_in
from pipeline.units import load_units
from pipeline.writers.outputs import FINDINGS_HEADERS, VALUES_HEADERS, csv_number, read_csv
from pipeline.writers.template import render_workbook

DEF = load_definition()
UNITS = load_units().set_index("unit_code")
PERIOD = "2020-H1"


def good(folder: Path, code: str, name: str | None = None, **values) -> Path:
    path = folder / (name or f"{code}.xlsx")
    path.parent.mkdir(parents=True, exist_ok=True)
    unit = UNITS.loc[code].to_dict() | {"unit_code": code}
    render_workbook(DEF, path, period=PERIOD, unit=unit, values=plausible(code) | values)
    return path


def consolidate(inbox: Path, out: Path, *extra: str) -> int:
    return main(["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD, "--quiet",
                 "--no-feedback", *extra])


def findings(out: Path) -> dict[str, list[str]]:
    by_file: dict[str, list[str]] = {}
    for row in read_csv(out / PERIOD / "findings.csv", FINDINGS_HEADERS).to_dict("records"):
        by_file.setdefault(row["file"], []).append(row["rule"])
    return by_file


def values_files(out: Path) -> set[str]:
    return set(read_csv(out / PERIOD / "values.csv", VALUES_HEADERS)["file"])


def manifest(out: Path) -> dict:
    return json.loads((out / PERIOD / "manifest.json").read_text(encoding="utf-8"))


def test_take_in_sorts_books_others_and_what_is_never_opened(tmp_path):
    inbox = tmp_path / "inbox"
    for name in ("b.xlsx", "A.XLS", "sub/c.ods", "sub/deeper/d.xlsm", "ghi-chu.txt", "sub/.~lock.c.ods#",
                 "~$b.xlsx", ".xlsx"):
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.xlsx").write_bytes(b"x")
    (inbox / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (inbox / "out.xlsx").symlink_to(tmp_path / "elsewhere" / "e.xlsx")  # a file outside the inbox
    (inbox / "in.xlsx").symlink_to(inbox / "b.xlsx")  # a file inside: read like it
    (inbox / "broken.xlsx").symlink_to(tmp_path / "nowhere.xlsx")
    (inbox / "loop.xlsx").symlink_to(inbox / "loop.xlsx")
    os.mkfifo(inbox / "pipe.xlsx")
    intake = take_in(inbox)
    assert intake.books == ["A.XLS", "b.xlsx", "broken.xlsx", "in.xlsx", "loop.xlsx", "pipe.xlsx",
                            os.path.join("sub", "c.ods"), os.path.join("sub", "deeper", "d.xlsm")]
    assert intake.others == [".xlsx", "ghi-chu.txt"]
    assert {k: (p.rule, p.detail) for k, p in intake.refused.items()} == {
        "link": ("file-special", "một lối tắt (liên kết) tới thư mục khác"),
        "out.xlsx": ("file-special", "một lối tắt (liên kết) tới tệp nằm ngoài hộp thư"),
    }
    assert discover(inbox) == (intake.books, intake.others)


def test_the_output_folder_inside_the_inbox_is_not_walked(tmp_path):
    inbox = tmp_path / "inbox"
    good(inbox, "07096")
    good(inbox / "ketqua" / PERIOD / "feedback", "07099")
    assert take_in(inbox, skip=[inbox / "ketqua"]).books == ["07096.xlsx"]


def test_special_entries_named_like_workbooks_get_a_finding_each_and_never_hang(tmp_path):
    inbox = tmp_path / "inbox"
    good(inbox, "07096")
    os.mkfifo(inbox / "07099.xlsx")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox / "07102.xlsx"))
    (inbox / "07105.xlsx").symlink_to(tmp_path / "gone.xlsx")
    (inbox / "07108.xlsx").symlink_to(inbox / "07108.xlsx")
    try:
        # in a process of its own: a read that blocked on the FIFO would fail the test, not hang it
        proc = run(["consolidate", "--inbox", str(inbox), "--out", str(tmp_path / "out"), "--period", PERIOD,
                    "--quiet", "--no-feedback"], timeout=300)
    finally:
        sock.close()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    by_file = findings(tmp_path / "out")
    assert {f: by_file[f] for f in ("07099.xlsx", "07102.xlsx", "07105.xlsx", "07108.xlsx")} == {
        "07099.xlsx": ["file-special"], "07102.xlsx": ["file-special"], "07105.xlsx": ["file-special"],
        "07108.xlsx": ["file-special"]}
    assert values_files(tmp_path / "out") == {"07096.xlsx"}


def test_links_out_of_the_inbox_are_neither_read_nor_hashed(tmp_path):
    inbox = tmp_path / "inbox"
    good(inbox, "07096")
    outside = good(tmp_path / "elsewhere", "07099")
    sparse = tmp_path / "elsewhere" / "huge.xlsx"
    with sparse.open("wb") as fh:
        fh.truncate(20 * 2**30)  # 20 GB that are not there: hashing it used to take most of a minute
    (inbox / "07099.xlsx").symlink_to(outside)
    (inbox / "07102.xlsx").symlink_to(sparse)
    (inbox / "passwd.xlsx").symlink_to("/etc/passwd")
    assert consolidate(inbox, tmp_path / "out") == 0
    by_file = findings(tmp_path / "out")
    assert by_file["07099.xlsx"] == by_file["07102.xlsx"] == by_file["passwd.xlsx"] == ["file-special"]
    inputs = {i["file"]: i["sha256"] for i in manifest(tmp_path / "out")["inputs"]}
    assert inputs["07099.xlsx"] is inputs["07102.xlsx"] is inputs["passwd.xlsx"] is None
    assert inputs["07096.xlsx"]
    assert values_files(tmp_path / "out") == {"07096.xlsx"}


def test_only_what_is_accepted_is_hashed(tmp_path):
    inbox = tmp_path / "inbox"
    good(inbox, "07096")
    with (inbox / "07099.xlsx").open("wb") as fh:
        fh.truncate(20 * 2**30)  # refused by its size, before a byte is read
    assert consolidate(inbox, tmp_path / "out") == 0
    assert findings(tmp_path / "out")["07099.xlsx"] == ["file-too-large"]
    assert {i["file"]: i["sha256"] for i in manifest(tmp_path / "out")["inputs"]}["07099.xlsx"] is None


@pytest.mark.skipif(not can_drop_file_rights(), reason="needs Linux, as a user or as root able to drop "
                    "CAP_DAC_OVERRIDE (file permissions must apply)")
def test_an_unreadable_file_and_folder_are_one_finding_each_and_the_run_goes_on(tmp_path):
    inbox = tmp_path / "inbox"
    good(inbox, "07096")
    locked = good(inbox, "07099")
    good(inbox / "07102-thuy-an", "07102")
    locked.chmod(0)
    (inbox / "07102-thuy-an").chmod(0)
    try:
        proc = run(["consolidate", "--inbox", str(inbox), "--out", str(tmp_path / "out"), "--period", PERIOD,
                    "--quiet", "--no-feedback"], preexec=drop_file_rights, timeout=300)
    finally:
        locked.chmod(0o644)
        (inbox / "07102-thuy-an").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Không ghi được" not in proc.stderr
    by_file = findings(tmp_path / "out")
    assert by_file["07099.xlsx"] == ["file-no-access"]
    assert by_file["07102-thuy-an"] == ["folder-unreadable"]
    assert values_files(tmp_path / "out") == {"07096.xlsx"}
    inputs = {i["file"]: i["sha256"] for i in manifest(tmp_path / "out")["inputs"]}
    assert inputs["07099.xlsx"] is None


def test_out_inside_the_inbox_never_reads_its_own_outputs(tmp_path):
    inbox = tmp_path / "inbox"
    good(inbox, "07096")
    good(inbox, "07099", name="07099-lan-1.xlsx", households=1234)
    out = inbox / "ket-qua"
    for _ in range(2):  # the second run finds the first one's feedback workbooks in its inbox
        assert main(["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD,
                     "--quiet"]) == 0
        assert (out / PERIOD / "feedback").is_dir()
        assert values_files(out) == {"07096.xlsx", "07099-lan-1.xlsx"}
        assert set(findings(out)) <= {"07096.xlsx", "07099-lan-1.xlsx"}
        assert {i["file"] for i in manifest(out)["inputs"]} == {"07096.xlsx", "07099-lan-1.xlsx"}


def test_own_outputs_anywhere_are_known_and_a_corrected_one_is_a_submission(tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    good(inbox, "07096")
    good(inbox, "07099", households="hai nghìn")
    assert main(["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD, "--quiet"]) == 0
    feedback = sorted((out / PERIOD / "feedback").glob("07099-*.xlsx"))[0]
    district = out / PERIOD / "thi-xa-dong-trieu.xlsx"
    shutil.copy(feedback, inbox / "phan-hoi-07099.xlsx")  # forwarded back as it was
    shutil.copy(district, inbox / "tong-hop.xlsx")
    corrected = openpyxl.load_workbook(feedback)  # the ward corrects its figure and saves
    corrected.properties.created = corrected.properties.created.replace(year=2020)
    corrected[DEF.sheet(DEF.fields["households"].sheet).name][DEF.fields["households"].cell] = 2222
    corrected.save(inbox / "07099-da-sua.xlsx")
    assert consolidate(inbox, out) == 0
    by_file = findings(out)
    assert by_file["phan-hoi-07099.xlsx"] == by_file["tong-hop.xlsx"] == ["file-own-output"]
    v = read_csv(out / PERIOD / "values.csv", VALUES_HEADERS)
    rows = v[(v["field"] == "households") & (v["unit_code"] == "07099")]
    assert [(r["file"], csv_number(r["value"])) for r in rows.to_dict("records")] == [
        ("07099-da-sua.xlsx", 2222)]

