"""The rules catalogue: every rule of the registry has a polite message and a case that makes the code
fire it.

`CASES` maps each rule id to a small function that builds an input (a crafted file, a cells frame, a
mail message, a frame for the consolidation...), runs the real code on it, the way a user's run does,
and returns the rule ids the code produced. A rule id in a comment or a test's text proves nothing here:
only a finding the code made does. Adding a rule means adding one line to `CASES`.

The second half checks the other direction: every rule id the code of `pipeline/` uses (read with `ast`,
in every form the code writes one) is registered, so a mistyped id fails here, not as a KeyError in an
office on the day the rule first fires.
"""

from __future__ import annotations

import ast
import base64
import functools
import io
import os
import re
import struct
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from sample_inbox import plausible

import pipeline
from pipeline.checks.validate import CELL_COLUMNS, validate
from pipeline.consolidate import choose_submissions, consolidate, self_test
from pipeline.definition import Definition, load_definition, load_rules
from pipeline.findings import make_findings, records_frame, render_message
from pipeline.intake.isolation import Failure, map_isolated
from pipeline.intake.reading import ReadOptions
from pipeline.mail.attachments import MailLimits
from pipeline.mail.fetch import DEFAULT_LIMITS
from pipeline.units import load_units
from pipeline.wiring import check_files
from pipeline.writers.template import render_workbook

DEF = load_definition()
LIBRARY = load_definition(Path(__file__).resolve().parent / "fixtures" / "thu-vien-xa.yaml")
REPORTS = {"tthtcd-6thang": DEF, "thu-vien-xa": LIBRARY}  # the shipped report and the second one
UNITS = load_units()
PERIOD = "2020-H1"
CODE = "07096"  # Phường Tràng An
OTHER = "07093"  # Phường Đức Chính


@dataclass
class Env:
    """What a case gets: a fresh folder, the report whose registry holds the rule, and the test's fixtures."""

    tmp: Path
    definition: Definition
    request: pytest.FixtureRequest

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)


Case = Callable[[Env], set]


# --- ward files, as a user's `check` / `consolidate` reads them ---------------------------------------

def checked(env: Env, path: Path) -> set[str]:
    """The rules `check` reports for the file at `path` (guard, reader, identification, validation)."""
    run = check_files([path], env.definition, UNITS, period=PERIOD, options=ReadOptions(isolate=False))
    return set(run.findings["rule"])


def unit_row(code: str) -> dict:
    return UNITS.set_index("unit_code").loc[code].to_dict() | {"unit_code": code}


def ward_file(env: Env, code: str | None = CODE, period: str = PERIOD, name: str = "bao-cao.xlsx",
              **values) -> Path:
    """A ward's report: its template (xlsxwriter, as `templates` writes it) filled with plausible figures."""
    path = env.tmp / name
    unit = unit_row(code) if code else None
    render_workbook(env.definition, path, period=period, unit=unit, values=plausible(code or CODE) | values)
    return path


def edited(path: Path, edit: Callable) -> Path:
    """The workbook at `path` changed by `edit(workbook)` and saved again by openpyxl (as a script would)."""
    wb = openpyxl.load_workbook(path)
    edit(wb)
    wb.save(path)
    return path


def rezipped(path: Path, change: Callable[[str, bytes], bytes] = lambda name, data: data,
             extra: dict[str, bytes] | None = None) -> Path:
    """The zip at `path` with each member's bytes passed through `change(name, data)` and `extra` added."""
    out = path.with_name("z-" + path.name)
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item, change(item.filename, zin.read(item.filename)))
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return out


def edited_ward_file(env: Env, edit: Callable) -> Path:
    return edited(ward_file(env), edit)


def with_member(env: Env, name: str, data: bytes) -> Path:
    """A ward's report with one more member in its zip."""
    return rezipped(ward_file(env), extra={name: data})


def written(env: Env, name: str, data: bytes) -> Path:
    path = env.tmp / name
    path.write_bytes(data)
    return path


def meta_cell(wb, key: str, value: str) -> None:
    """Set a key of the template's hidden sheet (key in column A, value in B)."""
    ws = wb["_tonghop"]
    row = next(r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value == key)
    ws.cell(row, 2).value = value


def field_cell(env: Env, wb, role: str, value) -> None:
    f = env.definition.role(role)
    wb[env.definition.sheet(f.sheet).name][f.cell] = value


def delete_row(env: Env, wb, fid: str) -> None:
    f = env.definition.fields[fid]
    wb[env.definition.sheet(f.sheet).name].delete_rows(f.row)


def truncated(env: Env) -> Path:
    data = ward_file(env).read_bytes()
    return written(env, "cut.xlsx", data[: len(data) // 2])


def encrypted(env: Env) -> Path:
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    with open(ward_file(env), "rb") as fh:
        OOXMLFile(fh).encrypt("1234", out)
    return written(env, "mat-khau.xlsx", out.getvalue())


def other_workbook(env: Env) -> Path:
    wb = openpyxl.Workbook()
    wb.active.title = "Sheet1"
    wb.active["A1"] = "Báo cáo tài chính quý II"
    path = env.tmp / "khac.xlsx"
    wb.save(path)
    return path


def hangs(seconds: float) -> None:
    time.sleep(seconds)


def timed_out(env: Env) -> set[str]:
    """A reader stuck on a file: the supervised worker is stopped after the timeout (`check` runs the
    reader this way; no file is known that hangs the reader within the guard's limits)."""
    return {r.rule for _, r in map_isolated(hangs, [600], timeout=0.5) if isinstance(r, Failure)}


# --- values, as validation sees every ward's cells at once --------------------------------------------

BASE = plausible(OTHER) | {"unit_code": OTHER, "unit_name": "Phường Đức Chính", "period": PERIOD}
BASE_INCOME = BASE["income_per_capita_mn"]  # million đồng a person a year


def validated(env: Env, change: dict | None = None, formulas: dict | None = None,
              base: dict = BASE) -> set[str]:
    """The rules validation reports (rendered as a run does) for one ward's cells: `base` with `change`;
    `formulas` (field → formula text) says which cells hold a formula."""
    values = base | (change or {})
    rows = [(0, f.id, values.get(f.id, ""), f.cell, False, (formulas or {}).get(f.id, ""))
            for f in env.definition.fields.values()]
    _, found = validate(env.definition, pd.DataFrame(rows, columns=CELL_COLUMNS))
    return rendered(env, found)


def rendered(env: Env, records) -> set[str]:
    """The rules of `records` once turned into findings (severity and message from the registry)."""
    return set(make_findings(records, env.definition.rules)["rule"])


def library_figures(**over) -> dict:
    """A commune library's yearly report (tests/fixtures/thu-vien-xa.yaml) with plausible figures."""
    values = {"unit_code": OTHER, "unit_name": "Phường Đức Chính", "period": "2020", "villages": 6,
              "homes": 1200, "card_rate": 45, "rating": "Đạt", "librarian": "Nguyễn Văn Thư",
              "signed_on": "20/12/2020"}
    for i, row in enumerate(("novels", "farming", "kids")):
        values |= {f"{row}.titles": 100 + i, f"{row}.copies": 300 + i}
    for i, row in enumerate(("onsite", "lending", "mobile")):
        values |= {f"{row}.sessions": 10 + i, f"{row}.readers": 200 + 10 * i, f"{row}.young": 50 + i}
    return values | over


# --- the consolidation and the checks around it ---------------------------------------------------

def submissions(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Submissions of the run's period as identify leaves them: (unit code, file, sha256) each."""
    codes, files, hashes = zip(*rows, strict=True)
    return pd.DataFrame(
        {"file": files, "unit_code": codes, "sha256": hashes, "report_date": "", "received": "",
         "in_period": True, "period": PERIOD, "sample": False,
         "unit_name": [unit_row(c)["full_name"] for c in codes]},
        index=pd.RangeIndex(len(rows), name="submission"))


def chosen(env: Env, rows: list[tuple[str, str, str]]) -> set[str]:
    _, found = choose_submissions(submissions(rows))
    return rendered(env, found)


def self_tested(env: Env) -> set[str]:
    """The self-test on a district figure that breaks the definition's rules. The counting rule makes this
    impossible from ward data (that is the rule's point: it names a defect of the program), so the
    consolidation of two plausible wards is corrupted after the fact."""
    codes = [CODE, OTHER]
    rows = [(i, f.id, plausible(c).get(f.id, ""), f.cell, False, "")
            for i, c in enumerate(codes) for f in env.definition.fields.values()]
    values, found = validate(env.definition, pd.DataFrame(rows, columns=CELL_COLUMNS))
    subs, _ = choose_submissions(submissions([(c, f"{c}.xlsx", c) for c in codes]))
    findings = make_findings(found.join(subs[["file", "unit_code", "unit_name"]], on="submission"),
                             env.definition.rules)
    cons = consolidate(env.definition, UNITS, subs, values, findings)
    assert self_test(env.definition, cons) == []
    cons.district.loc[cons.district["field"] == "literacy_rate", "value"] = 128.8
    return rendered(env, records_frame(self_test(env.definition, cons)).assign(unit_name="Thị xã Đông Triều"))


def peers(env: Env, change: dict) -> set[str]:
    """Twelve communes of one district, the fourth with `change` (pipeline.checks.peers)."""
    from test_peers import unit_figures, units_list

    from pipeline.checks.peers import peer_findings, unit_groups

    units = units_list({("P1", "D1"): 12})
    figures = pd.DataFrame([unit_figures(i) | (change if i == 3 else {}) for i in range(12)],
                           index=units["unit_code"].to_numpy())
    return rendered(env, peer_findings(env.definition, figures, unit_groups(units)))


def districts(env: Env, change: dict) -> set[str]:
    """Ten districts of a province side by side, the fifth with `change` (the province workbooks)."""
    from test_province import district_figures

    from pipeline.writers.province import district_findings

    index = [f"{i:03d}" for i in range(10)]
    figures = pd.DataFrame([district_figures(i) | (change if i == 4 else {}) for i in range(10)], index=index)
    names = pd.DataFrame({"district_name": [f"Huyện {i}" for i in range(10)], "province_code": "22",
                          "province_name": "Tỉnh Quảng Ninh"}, index=index)
    return set(district_findings(env.definition, figures, names)["rule"])


def changed(env: Env) -> set[str]:
    """A figure against the history store's earlier periods (households: limits in the definition)."""
    from pipeline.history.comparison import flag_changes

    current = pd.DataFrame({"submission": [0], "unit_code": [OTHER], "field": ["households"],
                            "value": [2379.0], "cell": ["B9"]})
    earlier = pd.DataFrame({"unit_code": [OTHER], "field": ["households"], "value": [2000.0],
                            "period": ["2019-H2"]})
    return rendered(env, flag_changes(current, earlier, env.definition, PERIOD))


# --- mail, as `fetch` handles each message -----------------------------------------------------------

OFFICE = "phong.gd@dongtrieu.test"
WARD = "tthtcd.ducchinh@gmail.com"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAIL_DATE = "Wed, 15 Jul 2020 09:30:00 +0700"


def part(name: str, data: bytes, ctype: str = XLSX_TYPE) -> bytes:
    """An attachment: `name` as Gmail and Outlook send it (RFC 2231), `data` in base64."""
    from urllib.parse import quote

    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (f"Content-Type: {ctype}\r\nContent-Disposition: attachment; filename*=UTF-8''{quote(name)}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + body


def mail(*parts: bytes, sender: str = WARD, body: bytes | None = None) -> bytes:
    """A multipart message from `sender` with a text body and `parts`."""
    body = body or (b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                    + "Kính gửi Phòng, đơn vị gửi báo cáo.".encode())
    head = (f"From: {sender}\r\nTo: {OFFICE}\r\nSubject: Bao cao\r\nDate: {MAIL_DATE}\r\n"
            f"Message-ID: <{time.monotonic_ns()}@catalogue.test>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n').encode()
    out = head + b"--b0\r\n" + body + b"\r\n"
    for p in parts:
        out += b"--b0\r\n" + p + b"\r\n"
    return out + b"--b0--\r\n"


def nested_mail(depth: int) -> bytes:
    """A message from the ward whose body is `depth` multiparts one inside the other."""
    body = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
    body += "Content-Type: text/plain\r\n\r\nx\r\n" + "".join(f"--b{i}--\r\n" for i in reversed(range(depth)))
    return f"From: <{WARD}>\r\nSubject: x\r\nMIME-Version: 1.0\r\n{body}".encode()


def book(tag: str, size: int = 400) -> bytes:
    """Bytes standing for a workbook (fetch saves bytes; the guard judges them at consolidation)."""
    return (b"PK\x03\x04" + tag.encode() * size)[:size]


def zipped(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def fetched(env: Env, raw: bytes, limits: MailLimits = DEFAULT_LIMITS) -> set[str]:
    """The rules `fetch` reports for one downloaded message (pipeline.mail.fetch.process_message on a
    store)."""
    from pipeline.history.store import open_store
    from pipeline.mail.fetch import _Context, process_message

    units = {OTHER: {"unit_name": unit_row(OTHER)["full_name"], "slug": unit_row(OTHER)["slug"]}}
    with open_store(env.tmp / "lich-su.sqlite") as store:
        ctx = _Context(store, env.tmp / "inbox", PERIOD, {WARD: OTHER}, units, limits, OFFICE, "INBOX", 1)
        ctx.inbox.mkdir(exist_ok=True)
        process_message(ctx, 1, raw, None)
    return set(make_findings(ctx.records, load_rules())["rule"])


def fetched_from_server(env: Env, raw: bytes, limits: MailLimits) -> set[str]:
    """The rules `fetch` reports for `raw` delivered to a real IMAP server (Dovecot on loopback)."""
    from mailservers import PASSWORD, USER

    from pipeline.history.store import open_store
    from pipeline.mail.config import MailConfig, Server
    from pipeline.mail.fetch import fetch_mail

    servers = env.fixture("mail_servers")
    if isinstance(servers, str):
        pytest.skip(f"mail servers unavailable: {servers}")
    imap, _ = servers
    mailbox = f"catalogue-{time.monotonic_ns()}"  # ASCII: the same name in IMAP's modified UTF-7
    imap.new_mailbox(mailbox)
    imap.deliver(mailbox, raw)
    server = Server("imap", "127.0.0.1", imap.imaps_port, "tls", USER, "TONGHOP_IMAP_PASSWORD", imap.cert)
    config = MailConfig(USER, "Phòng GD&ĐT", server, None, mailbox=mailbox)
    with open_store(env.tmp / "lich-su.sqlite") as store:
        report = fetch_mail(config, store, env.tmp / "inbox", PERIOD, {WARD: OTHER}, {}, limits=limits,
                            password=PASSWORD)
    return set(report.findings["rule"])


# --- an inbox, as a user's `consolidate` takes it in --------------------------------------------------

def consolidated(env: Env, build: Callable[[Path], None], preexec: Callable | None = None) -> set[str]:
    """The rules `tonghop consolidate` reports (findings.csv) for an inbox holding one good ward file and
    what `build(inbox)` adds; run as a user runs it, in a process of its own (`preexec`: e.g. drop rights)."""
    from processes import run

    from pipeline.writers.outputs import FINDINGS_HEADERS, read_csv

    inbox, out = env.tmp / "inbox", env.tmp / "out"
    inbox.mkdir()
    ward_file(env, name="inbox/07096.xlsx")
    build(inbox)
    proc = run(["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD, "--quiet",
                "--no-feedback", "--no-store"], preexec=preexec, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return set(read_csv(out / PERIOD / "findings.csv", FINDINGS_HEADERS)["rule"])


def own_output(env: Env, inbox: Path) -> None:
    """A district workbook of an earlier run dropped back into the inbox, as it was written."""
    first = env.tmp / "first"
    first.mkdir()
    ward_file(env, name="first/07096.xlsx")
    from pipeline.cli.commands import main

    assert main(["consolidate", "--inbox", str(first), "--out", str(env.tmp / "o1"), "--period", PERIOD,
                 "--quiet", "--no-feedback", "--no-store"]) == 0
    district = next((env.tmp / "o1" / PERIOD).glob("*.xlsx"))
    district.rename(inbox / "tong-hop.xlsx")


def unreadable(env: Env, inbox: Path) -> None:
    """A ward file the program may not open (permissions), in a folder it may not open."""
    locked = ward_file(env, code=OTHER, name="inbox/07093.xlsx")
    folder = inbox / "07102-thuy-an"
    folder.mkdir()
    locked.chmod(0)
    folder.chmod(0)
    env.request.addfinalizer(lambda: (locked.chmod(0o644), folder.chmod(0o755)))


def without_file_rights() -> Callable:
    from processes import can_drop_file_rights, drop_file_rights

    if not can_drop_file_rights():
        pytest.skip("needs Linux, as a user or as root able to drop CAP_DAC_OVERRIDE "
                    "(permissions must apply)")
    return drop_file_rights


def with_doctype(env: Env) -> Path:
    """A ward's report whose workbook part declares a DOCTYPE with an entity (never written by Excel)."""
    def change(name: str, data: bytes) -> bytes:
        if name != "xl/workbook.xml":
            return data
        head, sep, rest = data.partition(b"?>")
        return head + sep + b'<!DOCTYPE workbook [<!ENTITY a "aaaa">]>' + rest
    return rezipped(ward_file(env), change)


def far_cell_twice_named(env: Env) -> Path:
    """A cell written with its reference twice (<c r="A2500" r="XFD2500">): malformed XML, unreadable."""
    def change(name: str, data: bytes) -> bytes:
        if not name.startswith("xl/worksheets/"):
            return data
        return data.replace(b"</sheetData>", b'<row r="2500"><c r="A2500" r="XFD2500"><v>1</v></c></row>'
                            b"</sheetData>", 1)
    return rezipped(ward_file(env), change)


# --- the catalogue: rule id → a case that fires it ---------------------------------------------------

CASES: dict[str, Case] = {
    # the file as a whole (guard, isolation)
    "file-empty": lambda env: checked(env, written(env, "rong.xlsx", b"")),
    "file-truncated": lambda env: checked(env, truncated(env)),
    "file-not-workbook": lambda env: checked(env, written(env, "bao-cao.xlsx", b"%PDF-1.4\n%\xe2\xe3\n")),
    "file-encrypted": lambda env: checked(env, encrypted(env)),
    "file-too-large": lambda env: checked(  # a member inflating 4 MB from a few KB: a zip bomb's shape
        env, with_member(env, "xl/media/image1.png", b"\0" * 4_000_000)),
    "sheet-too-large": lambda env: checked(  # a value typed far below the report
        env, edited_ward_file(env, lambda wb: wb[env.definition.sheets[0].name].cell(6000, 1, "x"))),
    "file-unreadable": lambda env: checked(env, far_cell_twice_named(env)),
    "file-needs-resave": lambda env: checked(  # an Excel 2.x-4.x worksheet (BIFF2 BOF record)
        env, written(env, "cu.xls", struct.pack("<HHHH", 0x0009, 4, 2, 0x0010) + b"\0" * 60)),
    "file-doctype": lambda env: checked(env, with_doctype(env)),
    "file-own-output": lambda env: consolidated(env, lambda inbox: own_output(env, inbox)),
    "file-special": lambda env: consolidated(env, lambda inbox: os.mkfifo(inbox / "07093.xlsx")),
    "file-no-access": lambda env: consolidated(
        env, lambda inbox: unreadable(env, inbox), preexec=without_file_rights()),
    "folder-unreadable": lambda env: consolidated(
        env, lambda inbox: unreadable(env, inbox), preexec=without_file_rights()),
    "file-timeout": timed_out,
    "file-macros": lambda env: checked(env, with_member(env, "xl/vbaProject.bin", b"\0" * 64)),
    "file-duplicate": lambda env: chosen(env, [(CODE, "a.xlsx", "h1"), (CODE, "b.xlsx", "h1")]),
    "file-superseded": lambda env: chosen(env, [(CODE, "a.xlsx", "h1"), (CODE, "b.xlsx", "h2")]),
    "not-template": lambda env: checked(env, other_workbook(env)),
    # identity
    "template-version": lambda env: checked(
        env, edited_ward_file(env, lambda wb: meta_cell(wb, "template_version", "0"))),
    "unit-unknown": lambda env: checked(
        env, edited_ward_file(env, lambda wb: field_cell(env, wb, "unit_code", "99999"))),
    "unit-missing": lambda env: checked(env, ward_file(env, code=None)),
    "period-mismatch": lambda env: checked(env, ward_file(env, period="2019-H2")),
    "period-missing": lambda env: checked(env, edited_ward_file(
        env, lambda wb: (field_cell(env, wb, "period", None), meta_cell(wb, "period", "")))),
    "sheet-missing": lambda env: checked(
        env, edited_ward_file(env, lambda wb: wb.remove(wb[env.definition.sheets[-1].name]))),
    "field-missing": lambda env: checked(  # the row of a field deleted
        env, edited_ward_file(env, lambda wb: delete_row(env, wb, "households"))),
    # values
    "required-missing": lambda env: validated(env, {"households": ""}),
    "number-invalid": lambda env: validated(env, {"households": "abc"}),
    "number-malformed-group": lambda env: validated(env, {"households": "2.37"}),
    "count-three-decimals": lambda env: validated(env, {"conference_attendees": 2.215}),
    "count-not-whole": lambda env: validated(env, {"conference_attendees": 22.5}),
    "number-hedged": lambda env: validated(env, {"conferences": "trên 20"}),
    "percent-fraction": lambda env: validated(env, {"waste_collection_rate": 0.92}),
    "numbers-as-text": lambda env: validated(  # parts typed as text under the template's SUM, which shows 0
        env, {"literacy.participants": "30", "total.participants": 0},
        {"total.participants": env.definition.total_formula("total.participants")}),
    "text-too-long": lambda env: validated(env, {"plan_tasks": "x" * 40_000}),
    # totals, types, ranges
    "total-mismatch": lambda env: validated(env, {"total.participants": "8.28"}),
    "date-invalid": lambda env: validated(env, {"report_date": "31/2/2020"}),
    "value-negative": lambda env: validated(env, {"quarters": -1}),
    "value-out-of-range": lambda env: validated(env, {"literacy_rate": 120}),
    "choice-invalid": lambda env: validated(env, {"mobilization_unions": "Rất tốt"}),
    # the report's own cross-checks (schemas/tthtcd-6thang.yaml)
    "female-exceeds-participants": lambda env: validated(env, {"law.female": 400}),
    "female-blank": lambda env: validated(env, {"law.female": ""}),
    "participants-without-classes": lambda env: validated(env, {"law.classes": 0}),
    "classes-without-participants": lambda env: validated(env, {"health.classes": 2}),
    "learners-mismatch": lambda env: validated(env, {"learners": 900}),
    "poor-exceeds-households": lambda env: validated(env, {"near_poor_households": 5000}),
    "population-per-household": lambda env: validated(env, {"population": 90_000}),
    # plausibility of one ward's figures
    "ratio-implausible": lambda env: validated(env, {"culture_houses": 250}),
    "magnitude-thousand": lambda env: validated(env, {"income_per_capita_mn": BASE_INCOME * 1000}),
    "magnitude-million": lambda env: validated(env, {"income_per_capita_mn": BASE_INCOME * 1_000_000}),
    "report-date-outside-period": lambda env: validated(env, {"report_date": "15/6/2021"}),
    # among peers, and the district figures among a province's districts
    "peer-high": lambda env: peers(env, {"culture_houses": 300}),
    "peer-low": lambda env: peers(env, {"area_ha": 12.4}),
    "peer-magnitude-thousand": lambda env: peers(env, {"conference_attendees": 689_000}),
    "peer-magnitude-million": lambda env: peers(env, {"income_per_capita_mn": 45_000_000}),
    "district-peer-high": lambda env: districts(env, {"conference_attendees": 560_000}),
    "district-peer-low": lambda env: districts(env, {"area_ha": 200}),
    "district-ratio-implausible": lambda env: districts(env, {"households": 35}),
    "district-check-failed": self_tested,
    # history
    "change-vs-previous": changed,
    # mail
    "mail-sender-unknown": lambda env: fetched(env, mail(part("a.xlsx", book("a")), sender="la@x.test")),
    "mail-not-spreadsheet": lambda env: fetched(env, mail(part("a.pdf", b"%PDF-1.4", "application/pdf"))),
    "mail-name-unsafe": lambda env: fetched(env, mail(part("../../../bao-cao.xlsx", book("b")))),
    "mail-attachment-too-large": lambda env: fetched(
        env, mail(part("lon.xlsx", book("c", 5_000))), MailLimits(max_attachment=1_000)),
    "mail-message-too-large": lambda env: fetched_from_server(  # only the server knows a message's size
        env, mail(part("a.xlsx", book("d", 30_000))), MailLimits(max_message=20_000)),
    "mail-too-many-attachments": lambda env: fetched(
        env, mail(*(part(f"{i}.xlsx", book(f"e{i}")) for i in range(3))), MailLimits(max_files=2)),
    "mail-zip-refused": lambda env: fetched(  # a zip inside a zip
        env, mail(part("a.zip", zipped({"b.zip": zipped({"x.xlsx": book("f")})}), "application/zip"))),
    "mail-attachment-broken": lambda env: fetched(env, mail(  # cut short on the way: base64 mangled
        f"Content-Type: {XLSX_TYPE}\r\nContent-Disposition: attachment; filename=cut.xlsx\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nUEsDBBQAAAAIA*%$\r\nAAA\r\n".encode())),
    "mail-unreadable": lambda env: fetched(env, nested_mail(2000)),  # deeper than Python's parser goes
    # the second report's own cross-checks (tests/fixtures/thu-vien-xa.yaml)
    "young-exceeds-readers": lambda env: validated(env, {"lending.young": 999}, base=library_figures()),
    "copies-below-titles": lambda env: validated(env, {"novels.copies": 12}, base=library_figures()),
}


def _cases() -> Iterator:
    """(rule, report) for every rule of every report, each rule under the first report that has it."""
    seen = set()
    for report, definition in REPORTS.items():
        for rule in definition.rules:
            if rule not in seen:
                seen.add(rule)
                yield pytest.param(rule, report, id=rule)


@pytest.mark.parametrize(("rule", "report"), list(_cases()))
def test_the_case_of_each_rule_fires_it(rule, report, tmp_path, request):
    fired = CASES[rule](Env(tmp_path, REPORTS[report], request))
    assert rule in fired, f"the case of {rule} fired {sorted(fired)}"


def test_every_rule_has_a_case_and_every_case_a_rule():
    for report, definition in REPORTS.items():
        missing = set(definition.rules) - set(CASES)
        assert not missing, f"rules of {report} without a case in CASES: {sorted(missing)}"
    registered = set().union(*(d.rules for d in REPORTS.values()))
    assert not set(CASES) - registered, f"cases of unknown rules: {sorted(set(CASES) - registered)}"


def test_the_inputs_the_cases_start_from_are_clean(tmp_path, request):
    """Each case changes one thing of a clean input: so what fires is the change's doing."""
    env = Env(tmp_path, DEF, request)
    assert checked(env, ward_file(env)) == set()
    assert validated(env) == set()
    assert validated(Env(tmp_path, LIBRARY, request), base=library_figures()) == set()
    assert chosen(env, [(CODE, "a.xlsx", "h1"), (OTHER, "b.xlsx", "h2")]) == set()
    assert peers(env, {}) == set() and districts(env, {}) == set()
    assert fetched(env, mail(part("bao-cao.xlsx", book("clean")))) == set()


# --- every message reads as a sentence ---------------------------------------------------------------

EXAMPLE = {"file": "a.xlsx", "cell": "B9", "sheet": "Hiệu quả", "label": "Số hộ", "value": 1, "expected": 2,
           "detail": "x", "suggestions": "828", "limit": 60}


@pytest.mark.parametrize("rule", [pytest.param(r, id=rid) for rid, r in
                                  {rid: r for d in REPORTS.values() for rid, r in d.rules.items()}.items()])
def test_every_rule_has_a_severity_and_a_message_that_reads_as_a_sentence(rule):
    assert rule.severity in ("error", "warning")
    text = render_message(rule.message, EXAMPLE)
    assert text[0].isupper() and text.rstrip().endswith((".", "?")), text
    assert "{" not in text and "}" not in text, text


# --- every rule id the code uses is registered --------------------------------------------------------

KEBAB = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)+")
# names and columns that hold rule ids: rule, rules, RULE, MAGNITUDE_RULES, parse_rule, x["rule"], p.rule
RULE_NAME = re.compile(r"(?:^|_)rules?$", re.IGNORECASE)
PACKAGE = Path(pipeline.__file__).resolve().parent
CONTAINERS = frozenset({"frozenset", "set", "tuple", "list", "dict", "sorted"})


@dataclass(frozen=True)
class Use:
    """A string constant of the code, where it stands."""

    file: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule!r}"


def _is_rule_name(node: ast.AST) -> bool:
    """True for a name, attribute or column that holds rule ids."""
    if isinstance(node, ast.Name):
        return bool(RULE_NAME.search(node.id))
    if isinstance(node, ast.Attribute):
        return bool(RULE_NAME.search(node.attr))
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and bool(RULE_NAME.search(node.value))
    if isinstance(node, ast.Subscript):  # x["rule"], df.loc[m, "rule"], rule[mask]
        named = isinstance(node.value, ast.Name) and _is_rule_name(node.value)
        return named or _is_rule_name(_last_key(node))
    return False


def _mentions_rule(node: ast.AST) -> bool:
    return any(_is_rule_name(n) for n in ast.walk(node))


def _last_key(target: ast.Subscript) -> ast.AST:
    """The column part of a subscript: "rule" of x["rule"] and of df.loc[m, "rule"], ["value", "rule"] of
    df.loc[m, ["value", "rule"]]."""
    key = target.slice
    return key.elts[-1] if isinstance(key, ast.Tuple) and key.elts else key


@functools.cache
def _signatures(trees: tuple[ast.Module, ...]) -> dict[str, frozenset[int]]:
    """Callable name → the positions of its parameters named rule, over every function and class of `trees`
    (a class's annotated fields in order, as a dataclass takes them; a method's without self)."""
    params: dict[str, set[int]] = {}

    def note(name: str, args: list[str]) -> None:
        for i, arg in enumerate(args):
            if RULE_NAME.search(arg):
                params.setdefault(name, set()).add(i)

    def arg_names(f) -> list[str]:
        return [a.arg for a in (*f.args.posonlyargs, *f.args.args)]

    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                note(node.name, [s.target.id for s in node.body
                                 if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)])
                for method in node.body:
                    if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
                        args = arg_names(method)
                        note(method.name, args[1:] if args and args[0] in ("self", "cls") else args)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                note(node.name, arg_names(node))
    return {name: frozenset(where) for name, where in params.items()}


class _Collector:
    """Finds the string constants the code uses as rule ids, in every form `pipeline/` writes one:
    - the value of a dict's "rule" key: {"rule": "file-duplicate", ...} (also through `x if c else y`);
    - an argument bound to a parameter named rule: Problem("file-empty"), Failure("file-timeout", ...),
      Parsed(None, "count-not-whole"), a local add(check, "choice-invalid"), refuse(..., rule="...");
      a parameter's default (rule: str = "mail-zip-refused"); d.get("rule", "report-date-outside-period");
    - a value assigned to a rule-named target, tables included: RULE = "...", MAGNITUDE_RULES = {3: "..."},
      rule, detail = "mail-name-unsafe", x; rule[mask] = "..."; df.loc[m, ["value", "rule"]] = [nan, "..."];
    - a constant compared with something rule-named: rule == "not-template", "total-mismatch" in rules,
      df["rule"].isin(TABLE) (then TABLE's assigned value too, as for {"rule": RULE});
    - the first item of a problem tuple: out.problems.append(("sheet-missing", sheet, "", ""));
    - an item of a returned tuple: return None, "date-invalid".
    """

    def __init__(self, context: dict[str, ast.Module]) -> None:
        self.context = tuple(context.values())
        self.uses: list[Use] = []

    def collect(self, file: str, tree: ast.Module) -> None:
        """Add the rule ids `tree` (the module `file`) uses to `uses`."""
        params = dict(_signatures(self.context))
        for name, where in _signatures((tree,)).items():
            params[name] = params.get(name, frozenset()) | where
        self.file, self.params, self.tables = file, params, set()
        assigned: dict[str, list[ast.AST]] = {}
        for node in ast.walk(tree):
            self._visit(node)
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(t, ast.Name):
                        assigned.setdefault(t.id, []).append(node.value)
        done: set[str] = set()
        while self.tables - done:  # a name met where a rule id stands: what is assigned to it is one too
            name = (self.tables - done).pop()
            done.add(name)
            for value in assigned.get(name, ()):
                self._values(value)

    def _values(self, node: ast.AST | None) -> None:
        """Record the constants an expression standing for a rule id can evaluate to."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                self.uses.append(Use(self.file, node.lineno, node.value))
        elif isinstance(node, ast.Name):
            self.tables.add(node.id)
        elif isinstance(node, ast.IfExp):
            self._values(node.body)
            self._values(node.orelse)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                self._values(v)
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            for v in node.elts:
                self._values(v)
        elif isinstance(node, ast.Dict):
            for v in (*node.keys, *node.values):
                self._values(v)
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            self._values(node.elt)
        elif isinstance(node, ast.DictComp):
            self._values(node.key)
            self._values(node.value)
        elif isinstance(node, ast.Starred):
            self._values(node.value)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in CONTAINERS:
                for a in node.args:
                    self._values(a)
            elif isinstance(func, ast.Attribute) and func.attr == "get" and len(node.args) == 2:
                self._values(node.args[1])  # a lookup's default

    def _pair(self, target: ast.AST, value: ast.AST) -> None:
        """Record what an assignment puts into rule-named targets."""
        if isinstance(target, ast.Tuple | ast.List) and isinstance(value, ast.Tuple | ast.List) \
                and len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts, strict=True):
                self._pair(t, v)
        elif _is_rule_name(target):
            self._values(value)
        elif isinstance(target, ast.Subscript) and isinstance(value, ast.List | ast.Tuple):
            key = _last_key(target)  # df.loc[m, ["value", "rule"]] = [nan, "..."]
            if isinstance(key, ast.List | ast.Tuple) and len(key.elts) == len(value.elts):
                for k, v in zip(key.elts, value.elts, strict=True):
                    if _is_rule_name(k):
                        self._values(v)

    def _visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if k is not None and _is_rule_name(k):
                    self._values(v)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                self._pair(t, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self._pair(node.target, node.value)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            positional = [*a.posonlyargs, *a.args]
            defaults = [*zip(positional[len(positional) - len(a.defaults):], a.defaults, strict=True),
                        *zip(a.kwonlyargs, a.kw_defaults, strict=True)]
            for arg, default in defaults:
                if RULE_NAME.search(arg.arg):
                    self._values(default)
        elif isinstance(node, ast.Call):
            self._call(node)
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_mentions_rule(o) for o in operands):
                for o in operands:
                    if not _mentions_rule(o):
                        self._values(o)
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
            for v in node.value.elts:
                if isinstance(v, ast.Constant):
                    self._values(v)

    def _call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        for i in self.params.get(name, ()):
            if i < len(node.args):
                self._values(node.args[i])
        for kw in node.keywords:
            if kw.arg and RULE_NAME.search(kw.arg):
                self._values(kw.value)
        if not isinstance(func, ast.Attribute) or not node.args:
            return
        receiver, first = func.value, node.args[0]
        if func.attr == "get" and len(node.args) == 2 and (_is_rule_name(receiver) or _is_rule_name(first)):
            self._values(node.args[1])
        elif func.attr in ("isin", "eq", "ne") and _is_rule_name(receiver):
            self._values(first)
        elif func.attr == "append" and isinstance(first, ast.Tuple) and first.elts and (
                getattr(receiver, "id", None) == "problems" or getattr(receiver, "attr", None) == "problems"):
            self._values(first.elts[0])


@functools.cache
def parse_package(root: Path = PACKAGE) -> dict[str, ast.Module]:
    """file (pipeline/x.py) → its syntax tree, for every module of the package."""
    return {str(p.relative_to(root.parent)): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(root.rglob("*.py"))}


def rule_uses(trees: dict[str, ast.Module], context: dict[str, ast.Module] | None = None) -> list[Use]:
    """Every kebab-case constant the code of `trees` uses as a rule id, with its file and line; the
    signatures of `context` (default: the package) tell which parameters of a call take a rule id."""
    collector = _Collector(parse_package() if context is None else context)
    for file, tree in trees.items():
        collector.collect(file, tree)
    found = {u for u in collector.uses if KEBAB.fullmatch(u.rule)}
    return sorted(found, key=lambda u: (u.file, u.line, u.rule))


def kebab_constants(trees: dict[str, ast.Module]) -> list[Use]:
    """Every kebab-case string constant of `trees`, wherever it stands."""
    return [Use(file, n.lineno, n.value) for file, tree in trees.items() for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and KEBAB.fullmatch(n.value)]


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (a typo: a letter left out, added or changed is 1, two letters swapped 2)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def near_misses(trees: dict[str, ast.Module], registered: set[str]) -> list[Use]:
    """Kebab-case constants anywhere in `trees` one or two typos away from a registered rule id: a typo in
    a form the collector does not know (the code's other constants are all 5 or more away from one)."""
    uses = kebab_constants(trees)
    near = {c for c in {u.rule for u in uses} - registered if any(_distance(c, r) <= 2 for r in registered)}
    return [u for u in uses if u.rule in near]


REGISTERED = set(load_rules()).union(*(d.rules for d in REPORTS.values()))


def test_every_rule_id_the_code_uses_is_registered():
    trees = parse_package()
    uses = rule_uses(trees)
    assert len({u.rule for u in uses}) >= 40  # the collector does see the code's rule ids
    unknown = "\n".join(str(u) for u in uses if u.rule not in REGISTERED)
    assert not unknown, f"rule ids the code uses that neither rules.yaml nor a report registers:\n{unknown}"
    typos = "\n".join(str(u) for u in near_misses(trees, REGISTERED))
    assert not typos, f"constants a typo away from a rule id:\n{typos}"


def test_the_collector_sees_every_rule_id_the_code_writes():
    """A registered id written in a form the collector misses would let a typo in that form through: every
    constant equal to a rule id must stand in one of the collector's forms."""
    trees = parse_package()
    seen = set(rule_uses(trees))
    unseen = "\n".join(str(u) for u in kebab_constants(trees) if u.rule in REGISTERED and u not in seen)
    assert not unseen, f"teach _Collector this form of a rule id:\n{unseen}"


TYPOS = [
    ('out.append({"submission": 1, "rule": "file-emtpy"})', "file-emtpy"),
    ('x = {"rule": "period-mismatch" if a else "period-mising"}', "period-mising"),
    ('raise _Stop(Problem("file-encryted"))', "file-encryted"),
    ('f = Failure("file-timeot", "60 giây")', "file-timeot"),
    ('p = Parsed(None, "count-not-hole")', "count-not-hole"),
    ('refuse("x", rule="mail-zip-refuse")', "mail-zip-refuse"),
    ('def refuse(detail, rule="mail-zip-refuse"): pass', "mail-zip-refuse"),
    ('rule = spec.get("rule", "report-date-outside")', "report-date-outside"),
    ('PEER_RULES = {"high": "peer-hihg"}', "peer-hihg"),
    ('rule, detail = "mail-name-unsafe-x", unsafe', "mail-name-unsafe-x"),
    ('df.loc[m, ["value", "rule"]] = [0, "number-invalidd"]', "number-invalidd"),
    ('if rule == "not-templat": pass', "not-templat"),
    ('keep = f["rule"].isin(_OK)\n_OK = frozenset({"total-mismatc"})', "total-mismatc"),
    ('out.problems.append(("sheet-mising", s, "", ""))', "sheet-mising"),
    ('def parse(x):\n    return None, "date-invalidd"', "date-invalidd"),
    ('def _column(f):\n    def add(check, rule, detail=""): pass\n    add(c, "choice-invald")',
     "choice-invald"),
]


@pytest.mark.parametrize(("snippet", "typo"), TYPOS)
def test_a_mistyped_rule_id_is_reported_with_its_file_and_line(snippet, typo):
    found = [u for u in rule_uses({"pipeline/x.py": ast.parse(snippet)}) if u.rule not in REGISTERED]
    assert found == [Use("pipeline/x.py", snippet[: snippet.index(typo)].count("\n") + 1, typo)]


def test_a_typo_in_a_form_the_collector_does_not_know_is_still_caught():
    trees = {"pipeline/x.py": ast.parse('WHAT = "total-mismatch"\nlabel = ("x", "file-emty")')}
    assert rule_uses(trees) == []
    assert near_misses(trees, REGISTERED) == [Use("pipeline/x.py", 2, "file-emty")]
