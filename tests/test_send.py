"""`tonghop send` from a real consolidate run, its letters captured by a real SMTP server (aiosmtpd on
loopback, tests/mailservers.py) and parsed back; and what consolidate writes for it (manifest.json's
`units`, findings.json)."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from sample_inbox import make_samples

from pipeline.cli.commands import main
from pipeline.definition import DEFAULT_UNITS
from pipeline.history.store import open_store
from pipeline.mail.config import MailConfig, Server
from pipeline.mail.letters import finding_lines
from pipeline.mail.names import decode_filename, parse_message
from pipeline.mail.send import send_letters

PERIOD = "2020-H1"
OFFICE = "phong.gd@dongtrieu.test"
PASSWORD = "mật-khẩu-thử 123"
ADDRESSES = {  # unit code → email cell of the units list
    "07093": "TTHTCD.DucChinh@Gmail.com; ubnd.ducchinh@dongtrieu.test",  # two addresses, mixed case
    "07069": "refuse.maokhe@dongtrieu.test",  # the server refuses it (550)
    "07072": "busy.dongtrieu@dongtrieu.test",  # the server says try later (450)
    "07111": "tthtcd.hongthaidong@dongtrieu.test",  # no report of its own in the samples: a reminder
}


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The sample inbox consolidated with a units list that has an email column."""
    base = tmp_path_factory.mktemp("send")
    units = pd.read_csv(DEFAULT_UNITS, dtype=str, keep_default_na=False)
    units["email"] = units["unit_code"].map(ADDRESSES).fillna("")
    units_csv = base / "units.csv"
    units.to_csv(units_csv, index=False)
    inbox = base / "inbox"
    make_samples(inbox, PERIOD)
    out = base / "output"
    assert (
        main(
            [
                "consolidate",
                "--inbox",
                str(inbox),
                "--out",
                str(out),
                "--period",
                PERIOD,
                "--quiet",
                "--units",
                str(units_csv),
            ]
        )
        == 0
    )
    return base, units_csv, out


def test_manifest_lists_every_unit_with_status_counts_and_feedback(run):
    _, _, out = run
    manifest = json.loads((out / PERIOD / "manifest.json").read_text(encoding="utf-8"))
    units = {u["unit_code"]: u for u in manifest["units"]}
    assert len(units) == 21
    dc = units["07093"]
    assert dc["unit_name"] == "Phường Đức Chính" and dc["status"] == "Có lỗi" and dc["errors"] >= 1
    assert dc["file"] == "07093-duc-chinh.xlsx" and dc["feedback"] == "feedback/07093-duc-chinh.xlsx"
    assert (out / PERIOD / dc["feedback"]).is_file()
    missing = [u for u in manifest["units"] if u["status"] == "Chưa nộp"]
    assert missing and all(
        u["feedback"] is None and u["file"] is None and u["errors"] is None for u in missing
    )
    assert set(units) >= {"07111"} and units["07111"]["status"] == "Chưa nộp"


def test_findings_json_has_the_keys_of_check_json(run):
    _, _, out = run
    findings = json.loads((out / PERIOD / "findings.json").read_text(encoding="utf-8"))
    csv = pd.read_csv(out / PERIOD / "findings.csv", dtype=str, encoding="utf-8-sig", keep_default_na=False)
    assert len(findings) == len(csv)
    keys = [
        "file",
        "unit_code",
        "unit_name",
        "sheet",
        "cell",
        "field",
        "value",
        "rule",
        "severity",
        "message",
        "expected",
    ]
    assert all(list(f)[: len(keys)] == keys for f in findings)
    total = next(f for f in findings if f["unit_code"] == "07093" and f["rule"] == "total-mismatch")
    assert total["cell"] == "D16" and total["expected"] == 828


@pytest.fixture
def letters(run, tmp_path, capsys):
    """`tonghop send` without --send: the .eml files of the run, parsed."""
    _, units_csv, out = run
    config = tmp_path / "tonghop.toml"
    config.write_text(
        f'[mail]\naddress = "{OFFICE}"\nname = "Phòng Giáo dục và Đào tạo thị xã Đông Triều"\n'
        f'[deadlines]\n"{PERIOD}" = 2099-07-20\n',
        encoding="utf-8",
    )
    templates = tmp_path / "input_templates"
    code = main(
        [
            "send",
            "--period",
            PERIOD,
            "--out",
            str(out),
            "--units",
            str(units_csv),
            "--config",
            str(config),
            "--templates",
            str(templates),
            "--store",
            str(tmp_path / "lich-su.sqlite"),
        ]
    )
    printed = capsys.readouterr().out
    folder = out / PERIOD / "thu-gui"
    emls = {p.name: p.read_bytes() for p in sorted(folder.glob("*.eml"))}
    return code, printed, emls, templates, out / PERIOD


def test_send_writes_letters_for_review_and_sends_nothing(letters):
    code, printed, emls, _, _ = letters
    assert code == 1  # units without an address are listed
    assert set(emls) == {
        "07093-phan-hoi.eml",
        "07069-phan-hoi.eml",
        "07072-phan-hoi.eml",
        "07111-nhac-nop.eml",
    }
    assert "chưa có địa chỉ thư" in printed and "Chưa gửi thư nào" in printed


def test_feedback_letter_lists_the_errors_and_carries_the_feedback_workbook(letters):
    _, _, emls, _, out = letters
    raw = emls["07093-phan-hoi.eml"]
    assert raw.isascii() and b"\r\n" in raw  # 7-bit, CRLF: encoded headers and bodies
    msg = parse(raw)
    assert msg["Subject"].startswith(
        "Báo cáo kết quả tổ chức, hoạt động trung tâm học tập cộng đồng "
        "6 tháng đầu năm 2020 - Phường Đức Chính: Có "
    )
    assert msg["Subject"].endswith(" lỗi cần sửa")
    assert [a.addr_spec for a in msg["To"].addresses] == [
        "tthtcd.ducchinh@gmail.com",
        "ubnd.ducchinh@dongtrieu.test",
    ]
    assert msg["From"].addresses[0].display_name == "Phòng Giáo dục và Đào tạo thị xã Đông Triều"
    assert msg["Message-ID"].endswith("@dongtrieu.test>") and msg["Date"]
    body = msg.get_body(("plain",)).get_content()
    assert "Kính gửi: Phường Đức Chính," in body and "LỖI CẦN SỬA" in body
    assert "Trang «Kết quả hoạt động», ô D16:" in body and "Giá trị đúng: 828" in body
    assert "Đơn vị đã ghi: 8.28" in body and "Hạn gửi lại báo cáo đã sửa: ngày 20/07/2099." in body
    (part,) = list(msg.iter_attachments())
    assert part.get_content_type() == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert part.get_filename() == "Phường Đức Chính - góp ý báo cáo 2020-H1.xlsx"
    assert b"filename*0*=utf-8''" in raw  # RFC 2231, which tonghop fetch reads back too
    assert decode_filename(parse_message(part.as_bytes())) == part.get_filename()
    assert part.get_content() == (out / "feedback" / "07093-duc-chinh.xlsx").read_bytes()


def test_reminder_carries_the_units_template(letters):
    _, _, emls, templates, _ = letters
    msg = parse(emls["07111-nhac-nop.eml"])
    assert msg["Subject"] == (
        "Nhắc nộp báo cáo kết quả tổ chức, hoạt động trung tâm học tập cộng đồng 6 tháng "
        "đầu năm 2020 - Xã Hồng Thái Đông"
    )
    body = msg.get_body(("plain",)).get_content()
    assert "chưa nhận được" in body and "Hạn nộp báo cáo: ngày 20/07/2099." in body
    (part,) = list(msg.iter_attachments())
    assert part.get_content() == (templates / PERIOD / "07111-hong-thai-dong.xlsx").read_bytes()


@pytest.mark.parametrize(
    ("finding", "lines"),
    [
        (
            {"sheet": "Hiệu quả", "cell": "B6", "message": "Sai.", "value": 2.215, "expected": 2215},
            ["1. Trang «Hiệu quả», ô B6:", "   Sai.", "   Đơn vị đã ghi: 2,215", "   Giá trị đúng: 2.215"],
        ),
        (
            {
                "sheet": "Kết quả hoạt động",
                "cell": "D16",
                "message": "Tổng sai.",
                "value": "8.28",
                "suggestion": 828,
            },
            [
                "1. Trang «Kết quả hoạt động», ô D16:",
                "   Tổng sai.",
                "   Đơn vị đã ghi: 8.28",
                "   Có thể là: 828",
            ],
        ),
        ({"file": "x.xls", "message": "Tệp hỏng.", "value": None}, ["1. Tệp «x.xls»:", "   Tệp hỏng."]),
    ],
)
def test_finding_lines_keep_known_and_guessed_apart(finding, lines):
    assert finding_lines([finding]) == lines


@pytest.fixture
def smtp(mail_servers):
    if isinstance(mail_servers, str):
        pytest.skip(f"mail servers unavailable: {mail_servers}")
    _, server = mail_servers
    server.take()
    return server


def _config(tmp_path, smtp, security="starttls", units_csv=None) -> Path:
    port = smtp.starttls_port if security == "starttls" else smtp.tls_port
    path = tmp_path / "tonghop.toml"
    path.write_text(
        f'[mail]\naddress = "{OFFICE}"\nname = "Phòng Giáo dục và Đào tạo thị xã Đông Triều"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{security}"\nper_minute = 0\n'
        f'ca_file = "{smtp.cert}"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_send_delivers_each_letter_once_and_reports_each_recipient(
    run, smtp, tmp_path, capsys, monkeypatch, security
):
    base, units_csv, out = run
    monkeypatch.setenv("TONGHOP_SMTP_PASSWORD", PASSWORD)
    store = tmp_path / "lich-su.sqlite"
    args = [
        "send",
        "--period",
        PERIOD,
        "--out",
        str(out),
        "--units",
        str(units_csv),
        "--templates",
        str(tmp_path / "tpl"),
        "--store",
        str(store),
        "--config",
        str(_config(tmp_path, smtp, security)),
        "--send",
    ]
    assert main(args) == 1  # a refusal and a retry need the officer's attention
    printed = capsys.readouterr().out
    captured = smtp.take()
    got = {rcpt: parse(c.data) for c in captured for rcpt in c.rcpt_tos}
    assert set(got) == {
        "tthtcd.ducchinh@gmail.com",
        "ubnd.ducchinh@dongtrieu.test",
        "tthtcd.hongthaidong@dongtrieu.test",
    }
    assert {c.login for c in captured} == {OFFICE} and {c.mail_from for c in captured} == {OFFICE}
    # what was sent is what the officer could review
    eml = parse((out / PERIOD / "thu-gui" / "07093-phan-hoi.eml").read_bytes())
    sent = got["tthtcd.ducchinh@gmail.com"]
    assert sent["Message-ID"] == eml["Message-ID"] and sent["Subject"] == eml["Subject"]
    (part,) = list(sent.iter_attachments())
    assert part.get_content() == (out / PERIOD / "feedback" / "07093-duc-chinh.xlsx").read_bytes()
    assert "bị từ chối" in printed and "refuse.maokhe@dongtrieu.test" in printed and "550" in printed
    assert "sẽ thử lại" in printed and "busy.dongtrieu@dongtrieu.test" in printed
    with sqlite3.connect(store) as c:
        rows = dict(c.execute("SELECT recipient, status FROM mail_sent"))
    assert rows == {
        "tthtcd.ducchinh@gmail.com": "sent",
        "ubnd.ducchinh@dongtrieu.test": "sent",
        "tthtcd.hongthaidong@dongtrieu.test": "sent",
        "refuse.maokhe@dongtrieu.test": "refused",
        "busy.dongtrieu@dongtrieu.test": "retry",
    }
    # a rerun sends nothing twice: only the refused and the deferred are tried again
    assert main(args) == 1
    again = smtp.take()
    assert again == []  # both refused again by the server: nothing accepted
    printed = capsys.readouterr().out
    assert printed.count("đã gửi trước đây") >= 3
    # the officer corrects the address in the units list: only that letter goes out
    fixed = base / f"units-fixed-{security}.csv"
    table = pd.read_csv(units_csv, dtype=str, keep_default_na=False)
    table.loc[table["unit_code"] == "07069", "email"] = "tthtcd.maokhe@dongtrieu.test"
    table.loc[table["unit_code"] == "07072", "email"] = "tthtcd.dongtrieu@dongtrieu.test"
    table.to_csv(fixed, index=False)
    assert main([*args[:6], str(fixed), *args[7:]]) == 1  # units without an address are still listed
    third = smtp.take()
    assert sorted(r for c in third for r in c.rcpt_tos) == [
        "tthtcd.dongtrieu@dongtrieu.test",
        "tthtcd.maokhe@dongtrieu.test",
    ]


def test_a_wrong_password_sends_nothing(run, smtp, tmp_path, capsys, monkeypatch):
    _, units_csv, out = run
    monkeypatch.setenv("TONGHOP_SMTP_PASSWORD", "sai")
    code = main(
        [
            "send",
            "--period",
            PERIOD,
            "--out",
            str(out),
            "--units",
            str(units_csv),
            "--templates",
            str(tmp_path / "tpl"),
            "--store",
            str(tmp_path / "s.sqlite"),
            "--config",
            str(_config(tmp_path, smtp)),
            "--send",
        ]
    )
    assert code == 3 and "không chấp nhận tên đăng nhập hoặc mật khẩu" in capsys.readouterr().err
    assert smtp.take() == []


def test_sending_waits_between_letters_as_configured(run, smtp, tmp_path, monkeypatch):
    """per_minute = 30: two seconds between letters, measured on a given clock (no real waiting)."""
    from pipeline.definition import load_definition
    from pipeline.mail.addresses import unit_addresses
    from pipeline.mail.send import prepare_letters
    from pipeline.units import load_units

    _, units_csv, out = run
    units = load_units(units_csv)
    server = Server("smtp", "127.0.0.1", smtp.tls_port, "tls", OFFICE, "X", smtp.cert)
    config = MailConfig(OFFICE, "Phòng", None, server, per_minute=30)
    letters, _ = prepare_letters(
        load_definition(),
        units,
        unit_addresses(units, units_csv),
        config,
        out / PERIOD,
        tmp_path / "tpl",
        PERIOD,
    )
    now, waits = [100.0], []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    with open_store(tmp_path / "s.sqlite") as store:
        send_letters(letters, config, store, PERIOD, password=PASSWORD, clock=lambda: now[0], sleep=sleep)
    assert waits == [2.0] * (len(letters) - 1)
    smtp.take()


def test_send_without_a_consolidate_run_says_what_to_do(tmp_path, capsys):
    config = tmp_path / "tonghop.toml"
    config.write_text(f'[mail]\naddress = "{OFFICE}"\n', encoding="utf-8")
    assert main(["send", "--period", PERIOD, "--out", str(tmp_path / "none"), "--config", str(config)]) == 2
    assert "tonghop consolidate --period 2020-H1" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "none", ignore_errors=True)


def test_the_store_is_readable(tmp_path):
    with open_store(tmp_path / "s.sqlite") as store:
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"mail_fetch_state", "mail_messages", "mail_attachments", "mail_sent"} <= tables
    assert Path(tmp_path / "s.sqlite").is_file()
