"""Broken, foreign and hostile files through the whole run: it never crashes, hangs or loses anything.

The guard's own cases (zip bombs, encrypted files, ...) are in test_guard.py; here they go through
`tonghop consolidate` and `tonghop check` together with good files.
"""

import csv
import io
import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest
import python_calamine as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_inbox import plausible

from pipeline.cli.commands import main
from pipeline.definition import load_definition
from pipeline.units import load_units
from pipeline.writers.template import render_workbook

DEF = load_definition()
UNITS = load_units().set_index("unit_code")
PERIOD = "2020-H1"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# what exception text looks like: "XmlError: ...", "ValueError", "[Errno 13]", "invalid literal for"
EXCEPTION_TEXT = re.compile(r"[A-Z][A-Za-z]+(Error|Exception|Panic)\b|\[Errno|invalid literal|Traceback")
EVIL = [
    '=HYPERLINK("http://evil.example/x","bấm vào đây")',
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "{=1+1}",
    "http://evil.example",
    "\tTAB",
    "mailto:a@b.c",
]


def unit(code):
    return UNITS.loc[code].to_dict() | {"unit_code": code}


def good(folder: Path, code: str = "07096", **values) -> Path:
    path = folder / f"{code}.xlsx"
    render_workbook(DEF, path, period=PERIOD, unit=unit(code), values=plausible(code) | values)
    return path


def run_consolidate(inbox: Path, out: Path, *extra) -> int:
    return main(
        ["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD, "--quiet", *extra]
    )


def read_findings(out: Path) -> list[dict]:
    from pipeline.writers.outputs import FINDINGS_HEADERS, read_csv

    return read_csv(out / PERIOD / "findings.csv", FINDINGS_HEADERS).to_dict("records")


@pytest.mark.slow
def test_bad_files_get_one_finding_each_and_good_files_still_consolidate(tmp_path, capsys):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good(inbox, "07096")
    (inbox / "rong.xlsx").write_bytes(b"")
    full = io.BytesIO()
    render_workbook(DEF, full, period=PERIOD, unit=unit("07099"), values=plausible("07099"))
    (inbox / "07099-cut.xlsx").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (inbox / "07102.xls").write_text("ma,ten\n07102,Thủy An\n", encoding="utf-8")
    (inbox / "07105.xlsx").write_bytes(b"%PDF-1.4\n%\xe2\xe3\n1 0 obj<<>>endobj\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    (inbox / "07108.xlsx").write_bytes(buf.getvalue())
    assert run_consolidate(inbox, tmp_path / "out") == 0
    assert "Traceback" not in capsys.readouterr().err
    findings = read_findings(tmp_path / "out")
    by_file: dict[str, list[str]] = {}
    for f in findings:
        by_file.setdefault(f["file"], []).append(f["rule"])
    assert by_file["rong.xlsx"] == ["file-empty"]
    assert by_file["07099-cut.xlsx"] == ["file-truncated"]
    assert by_file["07102.xls"] == ["file-not-workbook"]
    assert by_file["07105.xlsx"] == ["file-not-workbook"]
    assert by_file["07108.xlsx"] == ["file-not-workbook"]
    assert "07096.xlsx" not in by_file
    assert all(f["message"].endswith(".") and f["file"] in f["message"] for f in findings)
    # the unit of a file that could not be read is known from its name and shown as having errors
    status = pc.CalamineWorkbook.from_path(str(tmp_path / "out" / PERIOD / "thi-xa-dong-trieu.xlsx"))
    rows = {r[0]: r for r in status.get_sheet_by_name("Tình hình nộp báo cáo").to_python() if r and r[0]}
    assert "Có lỗi" in rows["07099"] and "Đạt" in rows["07096"]


@pytest.mark.slow
def test_formula_strings_from_wards_stay_text_in_every_output(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good(
        inbox,
        "07096",
        reporter=EVIL[0],
        phone=EVIL[1],
        mobilization_note=EVIL[2],
        plan_tasks=EVIL[5],
        households=EVIL[3],
        population=EVIL[4],
        quarters=EVIL[6],
    )
    assert run_consolidate(inbox, tmp_path / "out") == 0
    out = tmp_path / "out" / PERIOD
    for book in [out / "thi-xa-dong-trieu.xlsx", *sorted((out / "feedback").glob("*.xlsx"))]:
        wb = openpyxl.load_workbook(book)
        for ws in wb.worksheets:
            for row in ws.iter_rows():
                for c in row:
                    if isinstance(c.value, str) and any(e in c.value for e in EVIL[:3]):
                        assert c.data_type == "s", (book.name, ws.title, c.coordinate, c.value)
        with zipfile.ZipFile(book) as z:
            for name in z.namelist():
                text = z.read(name).decode("utf-8", "replace")
                if name.startswith("xl/worksheets/sheet"):
                    assert not [f for f in re.findall(r"<f>(.*?)</f>", text) if "cmd" in f or "evil" in f]
                if name.endswith(".rels"):
                    assert "evil.example" not in text and "mailto:" not in text
    for name in ("values.csv", "findings.csv"):
        with (out / name).open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.reader(fh, delimiter=";"):
                for v in row:  # a unit code of digits is written ="07096" on purpose: Excel keeps its zero
                    risky = v.startswith(("=", "+", "-", "@", "\t", "\r"))
                    assert re.fullmatch(r'="\d+"', v) or not risky, (name, v)


@pytest.mark.slow
def test_file_names_cannot_escape_the_output_folder(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "a").mkdir(parents=True)
    (inbox / "b").mkdir()
    good(inbox / "a", "07096")
    good(inbox / "b", "07099").rename(inbox / "b" / "07096.xlsx")  # same name, another folder
    long = inbox / ("..%2F..%2Fetc ‮ passwd " + "ư" * 60 + ".xlsx")
    good(inbox, "07102").rename(long)
    out = tmp_path / "out"
    assert run_consolidate(inbox, out) == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and inbox not in p.parents]
    assert all(out in p.parents for p in written)
    findings = read_findings(out)
    assert {"a/07096.xlsx", "b/07096.xlsx"} <= {r["file"] for r in _values(out)}
    assert not [f for f in findings if f["rule"] in ("file-duplicate", "file-superseded")]
    assert len(list((out / PERIOD / "feedback").glob("*.xlsx"))) == 3


def _values(out: Path) -> list[dict]:
    from pipeline.writers.outputs import VALUES_HEADERS, read_csv

    return read_csv(out / PERIOD / "values.csv", VALUES_HEADERS).to_dict("records")


def test_check_never_shows_a_traceback(tmp_path, capsys):
    bad = tmp_path / "x.xlsx"
    bad.write_bytes(b"PK\x03\x04garbage")
    assert main(["check", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "x.xlsx" in captured.out


@pytest.mark.corpus
def test_real_world_corpus_never_crashes_or_hangs(tmp_path, capsys):
    if not CORPUS.is_dir():
        pytest.skip(f"../shared/corpus not found at {CORPUS}: the corpus test runs only where it exists")
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "MANIFEST.tsv")
    assert len(files) >= 70
    assert main(["check", "--json", "--timeout", "20", *map(str, files)]) in (0, 1)
    items = json.loads(capsys.readouterr().out)
    seen = {i["file"] for i in items}
    # every file is either reported (not the template, unreadable, ...) or read without findings
    assert len(seen) >= len(files) - 5
    assert all(i["message"] for i in items)
    # what a person reads is Vietnamese: no exception text (it goes to the log), no "nan" for a place
    assert not [i["message"] for i in items if EXCEPTION_TEXT.search(i["message"])]
    assert not [i for i in items if "nan" in (str(i["sheet"]), str(i["cell"]))]


CELL_VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["#DIV/0!", "#N/A", "#VALUE!", "x" * 40_000, "\x00\x01\x1f", "8.28", "gần 8.000", *EVIL]),
    st.dates(),
    st.booleans(),
)


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("TONGHOP_PROPERTY_EXAMPLES", "10")),
    deadline=None,
    derandomize=not os.environ.get("TONGHOP_PROPERTY_EXAMPLES"),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(values=st.dictionaries(st.sampled_from(sorted(DEF.fields)), CELL_VALUES, max_size=12))
def test_any_cell_values_give_a_complete_run_whose_outputs_open(tmp_path_factory, values):
    base = tmp_path_factory.mktemp("prop")
    inbox = base / "inbox"
    inbox.mkdir()
    path = good(inbox, "07096")
    wb = openpyxl.load_workbook(path)
    for fid, v in values.items():
        f = DEF.fields[fid]
        if isinstance(v, str):
            v = "".join(ch for ch in v if ch >= " " or ch in "\t\n")[:32_000]
        wb[DEF.sheet(f.sheet).name][f.cell].value = v
        wb[DEF.sheet(f.sheet).name][f.cell].data_type = (
            "s" if isinstance(v, str) else wb[DEF.sheet(f.sheet).name][f.cell].data_type
        )
    wb.save(path)
    assert run_consolidate(inbox, base / "out") == 0
    out = base / "out" / PERIOD
    for book in [out / "thi-xa-dong-trieu.xlsx", *(out / "feedback").glob("*.xlsx")]:
        workbook = pc.CalamineWorkbook.from_path(str(book))
        for name in workbook.sheet_names:
            workbook.get_sheet_by_name(name).to_python()
    json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert _values(base / "out")


def test_openpyxl_uses_defusedxml():
    assert openpyxl.DEFUSEDXML is True


BOMB = (
    '<!DOCTYPE sst [<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">'
    + "".join(f'<!ENTITY {n} "{("&" + p + ";") * 10}">' for p, n in zip("abcdefgh", "bcdefghi", strict=True))
    + '<!ENTITY x SYSTEM "file:///etc/passwd"><!ENTITY web SYSTEM "http://127.0.0.1:9/x">]>'
)


@pytest.mark.parametrize("member", ["xl/sharedStrings.xml", "xl/workbook.xml", "xl/worksheets/sheet2.xml"])
def test_entity_bombs_and_external_entities_are_never_expanded(tmp_path, capsys, member):
    src = good(tmp_path, "07096")
    bad = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == member:
                text = data.decode("utf-8")
                head, sep, rest = text.partition("?>")
                text = head + sep + BOMB + rest
                text = text.replace("<t>Hướng dẫn</t>", "<t>&i;&x;&web;</t>", 1).replace(
                    "<t>", "<t>&i;&x;", 1
                )
                data = text.encode("utf-8")
            zout.writestr(item, data)
    code = main(["check", "--json", str(bad)])
    out = capsys.readouterr().out
    assert code in (0, 1) and "root:" not in out and "a" * 1000 not in out
    assert [f["rule"] for f in json.loads(out)] == ["file-doctype"]  # refused for what it is


def test_csv_quotes_risky_text_and_keeps_mixed_values_apart(tmp_path):
    """Text columns are defused once per distinct value; a mixed column cell by cell (1 and 1.0 are the
    number 1, True stays text)."""
    import pandas as pd

    from pipeline.writers.outputs import write_csv

    df = pd.DataFrame({"text": ["=1+1", "an toàn", None, "=1+1", "-5", "@x"],
                       "mixed": [1, 1.0, True, float("nan"), "+3", pd.NA],
                       "number": [1.5, None, 3.0, 4.0, 5.0, 6.0]})
    write_csv(df, tmp_path / "x.csv")
    with (tmp_path / "x.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    assert rows[0] == ["text", "mixed", "number"]
    assert [r[0] for r in rows[1:]] == ["'=1+1", "an toàn", "", "'=1+1", "'-5", "'@x"]
    assert [r[1] for r in rows[1:]] == ["1", "1", "True", "", "'+3", ""]
    assert [r[2] for r in rows[1:]] == ["1,5", "", "3", "4", "5", "6"]


def test_two_readers_share_the_files_and_each_file_keeps_its_own_result(tmp_path, monkeypatch):
    """With --jobs 2 two supervised workers read; a crash or a hang still costs only its own file, and
    every other file's figures stay with that file. (Whether their reads overlap in time is the
    scheduler's business: not tested.)"""
    from pipeline.intake import reading as run
    from pipeline.intake.reading import ReadOptions
    from pipeline.wiring import check_files

    streams: list[list] = []
    real_map = run.map_isolated

    def counted(func, items, **kwargs):
        streams.append(seen := [])
        for item, result in real_map(func, items, **kwargs):
            seen.append(item[1].name)
            yield item, result

    monkeypatch.setattr(run, "map_isolated", counted)

    codes = ["07093", "07096", "07099", "07102"]
    books = {}
    for code in codes:
        buf = io.BytesIO()
        render_workbook(DEF, buf, period=PERIOD, unit=unit(code), values=plausible(code))
        books[code] = buf.getvalue()
    paths = []
    for k in range(80):
        code = codes[k % len(codes)]
        name = "crash.xlsx" if k == 11 else "slow.xlsx" if k == 50 else f"{k:03d}-{code}.xlsx"
        paths.append(tmp_path / name)
        paths[-1].write_bytes(books[code])
    real = run.read_workbook

    def flaky(path, spec):
        if path.name == "crash.xlsx":
            os.abort()
        if path.name == "slow.xlsx":
            time.sleep(600)
        return real(path, spec=spec)

    monkeypatch.setattr(run, "read_workbook", flaky)
    # timeout 10 s: a read takes some ms, so none but the hanging one ever reaches it, however loaded
    result = check_files(paths, DEF, load_units(), names=[p.name for p in paths],
                         period=PERIOD, options=ReadOptions(readers=2, timeout=10))
    rules = {(f, r) for f, r in zip(result.findings["file"], result.findings["rule"], strict=True)}
    assert ("crash.xlsx", "file-unreadable") in rules and ("slow.xlsx", "file-timeout") in rules
    subs = result.submissions
    assert len(subs) == 78
    assert all(name.split("-")[1].startswith(code) for name, code in zip(subs["file"], subs["unit_code"],
                                                                           strict=True))
    households = result.values[result.values["field"] == "households"].set_index("submission")["value"]
    for sub, code in subs["unit_code"].items():
        assert households[sub] == plausible(code)["households"]
    # two readers were started and every file was read once, by one of them (how the files were
    # shared between them depends on which was quicker: not tested)
    assert len(streams) == 2
    assert sorted(name for stream in streams for name in stream) == sorted(p.name for p in paths)


def test_a_workbook_with_macros_and_errors_prints_no_nan(tmp_path, capsys):
    """A file-level warning (macros) beside cell findings: every place shown is a place, never "nan"."""
    path = good(tmp_path, "07096", households="hai nghìn")
    xlsm = tmp_path / "07096.xlsm"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(xlsm, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item, zin.read(item))
        zout.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0" + b"\0" * 60)
    assert main(["check", str(xlsm)]) == 1
    out = capsys.readouterr().out
    assert "nan" not in out and "(cả tệp)" in out and "hai nghìn" in out
    assert main(["check", "--json", str(xlsm)]) == 1
    items = json.loads(capsys.readouterr().out)
    assert {i["rule"] for i in items} >= {"file-macros", "number-invalid"}
    assert all(i["cell"] is None or isinstance(i["cell"], str) for i in items)


def _crafted(folder: Path) -> dict[str, str]:
    """Files that got past the first pre-scan (issue 13), each added to a valid submission: name -> the
    rule it must get."""
    src = good(folder / "src", "07093")
    out = {}

    def variant(name: str, rule: str, change) -> None:
        path = folder / name
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
            members = {i.filename: zin.read(i) for i in zin.infolist()}
            change(members)
            for member, data in members.items():
                zout.writestr(member, data)
        out[name] = rule

    def far(spelling: str):
        def change(members):
            sheet = next(n for n in members if n.startswith("xl/worksheets/"))
            row = f'<row r="2500">{spelling}</row></sheetData>'.encode()
            members[sheet] = members[sheet].replace(b"</sheetData>", row, 1)
        return change

    def amplified(members):
        """40,000 cells naming one 32,000-character string (the issue's file has 1,000,000)."""
        sst = members["xl/sharedStrings.xml"]
        index = sst.count(b"<si>")
        long = "<si><t>" + "ư" * 32_000 + "</t></si></sst>"
        members["xl/sharedStrings.xml"] = sst.replace(b"</sst>", long.encode())
        cells = "".join(f'<c r="{_col(c)}{{r}}" t="s"><v>{index}</v></c>' for c in range(1, 101))
        rows = (f'<row r="{r}">' + cells.replace("{r}", str(r)) + "</row>" for r in range(100, 500))
        sheet = next(n for n in members if n.startswith("xl/worksheets/"))
        members[sheet] = members[sheet].replace(b"<sheetData>", b"<sheetData>" + "".join(rows).encode(), 1)

    variant("07096-khuech-dai.xlsx", "file-too-large", amplified)
    variant("07099-r-kep.xlsx", "file-unreadable", far('<c r="A2500" r="XFD2500"><v>1</v></c>'))
    variant("07102-dau-lon.xlsx", "sheet-too-large", far('<c s=">" r="XFD2500"><v>1</v></c>'))
    variant("07105-tien-to.xlsx", "sheet-too-large",
            far('<ư:c xmlns:ư="http://schemas.openxmlformats.org/spreadsheetml/2006/main" r="XFD2500">'
                "<ư:v>1</ư:v></ư:c>"))
    ods = folder / "07108-cong.ods"
    with zipfile.ZipFile(ods, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("content.xml", '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:'
                   'xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0">'
                   "<office:body>"
                   '<office:spreadsheet><table:table table:name="A"><table:table-row><table:table-cell '
                   'office:value-type="float" office:value="1" table:number-columns-repeated="+16384"/>'
                   "</table:table-row></table:table></office:spreadsheet></office:body>"
                   "</office:document-content>")
    out[ods.name] = "sheet-too-large"
    shutil.rmtree(folder / "src")
    return out


def _col(n: int) -> str:
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def test_crafted_files_among_good_ones_cost_only_themselves(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    crafted = _crafted(inbox)
    for code in ("07111", "07114", "07117"):
        good(inbox, code)
    assert run_consolidate(inbox, tmp_path / "out", "--no-feedback") == 0
    by_file: dict[str, list[str]] = {}
    for f in read_findings(tmp_path / "out"):
        by_file.setdefault(f["file"], []).append(f["rule"])
    assert {name: by_file.get(name) for name in crafted} == {name: [rule] for name, rule in crafted.items()}
    assert {r["file"] for r in _values(tmp_path / "out")} == {"07111.xlsx", "07114.xlsx", "07117.xlsx"}
