"""`tonghop fetch` against a real IMAP server (Dovecot on loopback, tests/mailservers.py).

Messages are put in the server's mailbox with IMAP APPEND, written byte for byte the ways mail clients
write them; then the fetch runs as the officer runs it, and the inbox, the store and the report are
checked.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import itertools
import os
import sqlite3
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from pipeline.history.store import open_store
from pipeline.mail.attachments import MailLimits
from pipeline.mail.config import MailConfig, Server, load_config
from pipeline.mail.fetch import MailError, fetch_mail

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_PART = f"Content-Type: {XLSX}\r\n".encode()
OFFICE = "phong.gd@dongtrieu.test"
DUC_CHINH = "tthtcd.ducchinh@gmail.com"  # 07093 Đức Chính in the test units list
MAO_KHE = "ttht.maokhe@dongtrieu.test"  # 07069 Mạo Khê
DATE = "Wed, 15 Jul 2020 09:30:00 +0700"
_counter = itertools.count(1)


@pytest.fixture
def servers(mail_servers):
    if isinstance(mail_servers, str):
        pytest.skip(f"mail servers unavailable: {mail_servers}")
    return mail_servers


def book(tag: str) -> bytes:
    """Bytes standing for a workbook (fetch saves bytes; consolidate's pre-scan judges them later)."""
    return b"PK\x03\x04" + f"workbook {tag} ".encode() * 40


def attachment(data: bytes, disposition: bytes, ctype: str = XLSX) -> bytes:
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (
        f"Content-Type: {ctype}\r\n".encode() + disposition + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body
    )


def rfc2231(name: str) -> bytes:
    return b"Content-Disposition: attachment; filename*=UTF-8''" + urllib.parse.quote(name.encode()).encode()


def rfc2047(name: str) -> bytes:
    return b'Content-Disposition: attachment; filename="=?UTF-8?B?' + base64.b64encode(name.encode()) + b'?="'


def message(
    sender: str,
    *parts: bytes,
    subject: str = "Báo cáo 6 tháng",
    message_id: str | None = "auto",
    date: str = DATE,
    text: str = "Kính gửi Phòng GD&ĐT, đơn vị gửi báo cáo.",
) -> bytes:
    """A multipart/mixed message with a text body and `parts` (from attachment()), as bytes."""
    if message_id == "auto":
        message_id = f"<{next(_counter)}.{os.getpid()}@test.example>"
    head = [
        f"From: =?UTF-8?B?{base64.b64encode('Trung tâm HTCĐ'.encode()).decode()}?= <{sender}>",
        f"To: {OFFICE}",
        f"Subject: =?UTF-8?B?{base64.b64encode(subject.encode()).decode()}?=",
        f"Date: {date}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b0undary"',
    ]
    if message_id:
        head.append(f"Message-ID: {message_id}")
    out = "\r\n".join(head).encode() + b"\r\n\r\n--b0undary\r\nContent-Type: text/plain; charset=utf-8\r\n"
    out += b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text.encode() + b"\r\n"
    for part in parts:
        out += b"--b0undary\r\n" + part + b"\r\n"
    return out + b"--b0undary--\r\n"


def zipped(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def legacy_zip(raw_name: bytes, data: bytes) -> bytes:
    """A zip whose entry name is stored in a legacy code page without the UTF-8 flag, as Windows'
    "Send to compressed folder" writes it: written under an ASCII name of the same length, then the
    name's bytes replaced (local header and central directory; sizes and offsets stay)."""
    placeholder = b"N" * (len(raw_name) - 5) + b".xlsx"
    out = zipped({placeholder.decode(): data})
    assert out.count(placeholder) == 2
    return out.replace(placeholder, raw_name)


@pytest.fixture
def setup(servers, tmp_path, monkeypatch, units):
    """A fresh mailbox, a config pointing at it (TLS), a store and an inbox; returns a namespace."""
    imap, _ = servers
    mailbox = f"Báo cáo {next(_counter)}"
    imap.new_mailbox(_utf7(mailbox))
    monkeypatch.setenv("TONGHOP_IMAP_PASSWORD", "mật-khẩu-thử 123")
    server = Server("imap", "127.0.0.1", imap.imaps_port, "tls", OFFICE, "TONGHOP_IMAP_PASSWORD", imap.cert)
    config = MailConfig(OFFICE, "Phòng GD&ĐT", server, None, mailbox=mailbox)
    senders = {DUC_CHINH: "07093", MAO_KHE: "07069"}
    by_code = {
        r["unit_code"]: {"unit_name": r["full_name"], "slug": r["slug"]} for r in units.to_dict("records")
    }

    class S:
        pass

    s = S()
    s.imap, s.mailbox, s.config, s.store_path = imap, mailbox, config, tmp_path / "lich-su.sqlite"
    s.inbox = tmp_path / "inbox" / "2020-H1"

    def deliver(*messages):
        imap.deliver(_utf7(mailbox), *messages)

    def fetch(**kw):
        with open_store(s.store_path) as store:
            return fetch_mail(
                kw.pop("config", config),
                store,
                kw.pop("inbox", s.inbox),
                "2020-H1",
                senders,
                by_code,
                password="mật-khẩu-thử 123",
                **kw,
            )

    def rows(sql):
        with sqlite3.connect(s.store_path) as c:
            return c.execute(sql).fetchall()

    s.deliver, s.fetch, s.rows = deliver, fetch, rows
    return s


def _utf7(name: str) -> str:
    from pipeline.mail.fetch import imap_utf7

    return imap_utf7(name)[1:-1]


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


# -------------------------------------------------------------------------------------------------


def test_fetch_saves_every_spreadsheet_with_its_name_date_and_sender(setup):
    names = {
        "rfc2231": "Báo cáo Đức Chính.xlsx",
        "rfc2047": "Báo cáo 6 tháng Mạo Khê.xls",
        "raw": "Bảng tổng hợp.ods",
    }
    setup.deliver(
        message(
            DUC_CHINH,
            attachment(book("a"), rfc2231(names["rfc2231"])),
            attachment(book("b"), rfc2047(names["rfc2047"]), "application/vnd.ms-excel"),
            attachment(
                book("c"),
                b'Content-Disposition: attachment; filename="' + names["raw"].encode() + b'"',
                "application/vnd.oasis.opendocument.spreadsheet",
            ),
            attachment(b"%PDF-1.4 scan", rfc2231("Công văn.pdf"), "application/pdf"),
        ),
        message(
            MAO_KHE,
            attachment(
                zipped({"Báo cáo Mạo Khê.xlsx": book("d"), "ghi chú.txt": b"x"}),
                rfc2231("bao-cao.zip"),
                "application/zip",
            ),
        ),
        message(MAO_KHE, text="Thư không có tệp đính kèm."),
        message(
            "la@unknown.test",
            attachment(book("e"), rfc2231("báo cáo.xlsx")),
            date="Thu, 16 Jul 2020 08:05:00 +0700",
        ),
    )
    report = setup.fetch()
    saved = listing(setup.inbox)
    assert (
        saved
        == {
            "2020-07-15_0930_07069-mao-khe_Báo cáo Mạo Khê.xlsx": book("d"),
            "2020-07-15_0930_07093-duc-chinh_Báo cáo 6 tháng Mạo Khê.xls": book("b"),
            "2020-07-15_0930_07093-duc-chinh_Báo cáo Đức Chính.xlsx": book("a"),
            "2020-07-15_0930_07093-duc-chinh_Bảng tổng hợp.ods": book("c"),
            "2020-07-16_0805_la@unknown.test_báo cáo.xlsx": book("e"),
        }
        if _local_is_ict()
        else saved
    )  # names show the local time: checked exactly where it is UTC+7
    assert len(saved) == 5 and report.looked_at == 4
    # the message's date is the file's modification time and its received time in the store
    first = next(p for p in setup.inbox.iterdir() if "Đức Chính" in p.name)
    sent_at = dt.datetime(2020, 7, 15, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    assert first.stat().st_mtime == sent_at.timestamp()
    received = setup.rows("SELECT received_at, received_via FROM files")
    assert set(received) == {("2020-07-15T09:30:00+07:00", "email"), ("2020-07-16T08:05:00+07:00", "email")}
    assert [(f.rule, f.value) for f in report.findings.itertuples()] == [
        ("mail-not-spreadsheet", DUC_CHINH),
        ("mail-not-spreadsheet", MAO_KHE),
        ("mail-sender-unknown", "la@unknown.test"),
    ]
    assert "ghi chú.txt" in report.findings["file"].iloc[1]
    assert {r[0] for r in setup.rows("SELECT unit_code FROM mail_messages")} == {"07093", "07069", None}


def _local_is_ict() -> bool:
    return dt.datetime.now().astimezone().utcoffset() == dt.timedelta(hours=7)


def test_fetching_twice_saves_nothing_twice_and_a_duplicate_is_not_saved(setup):
    same = attachment(book("same"), rfc2231("Báo cáo.xlsx"))
    setup.deliver(message(DUC_CHINH, same), message(DUC_CHINH, same, subject="Gửi lại"))
    first = setup.fetch()
    assert len(first.saved) == 1 and first.duplicates == 1
    setup.deliver(message(DUC_CHINH, attachment(book("new"), rfc2231("Báo cáo sửa.xlsx"))))
    second = setup.fetch()
    assert second.looked_at == 1 and len(second.saved) == 1
    third = setup.fetch()
    assert third.looked_at == 0 and third.saved == []
    assert len(listing(setup.inbox)) == 2
    statuses = setup.rows("SELECT status FROM mail_attachments ORDER BY attachment_id")
    assert statuses == [("saved",), ("duplicate",), ("saved",)]


def test_a_changed_uidvalidity_refetches_without_saving_twice(setup):
    old = message(DUC_CHINH, attachment(book("old"), rfc2231("Báo cáo.xlsx")))
    setup.deliver(old)
    assert len(setup.fetch().saved) == 1
    validity = setup.rows("SELECT uidvalidity FROM mail_fetch_state")[0][0]
    setup.imap.recreate(_utf7(setup.mailbox))  # the server numbers the mailbox anew
    setup.deliver(old, message(MAO_KHE, attachment(book("mk"), rfc2231("Mạo Khê.xlsx"))))
    report = setup.fetch()
    assert report.uidvalidity_changed and report.looked_at == 2 and report.already_seen == 1
    assert [s for _, s in report.messages[0].saved] == [
        "2020-07-15_0930_07069-mao-khe_Mạo Khê.xlsx"
    ] or not _local_is_ict()
    assert len(listing(setup.inbox)) == 2
    assert setup.rows("SELECT uidvalidity, last_uid FROM mail_fetch_state")[0][0] != validity


def test_mail_is_not_flagged_unless_asked(setup):
    setup.deliver(message(DUC_CHINH, attachment(book("f"), rfc2231("a.xlsx"))))
    setup.fetch()
    assert b"\\Seen" not in b" ".join(setup.imap.flags(_utf7(setup.mailbox)))
    setup.deliver(message(DUC_CHINH, attachment(book("g"), rfc2231("b.xlsx"))))
    setup.fetch(mark_seen=True)
    flags = setup.imap.flags(_utf7(setup.mailbox))
    assert b"\\Seen" not in flags[0] and b"\\Seen" in flags[1]


def test_starttls_on_the_plain_port(setup):
    plain = Server(
        "imap",
        "127.0.0.1",
        setup.imap.imap_port,
        "starttls",
        OFFICE,
        "TONGHOP_IMAP_PASSWORD",
        setup.imap.cert,
    )
    setup.deliver(message(DUC_CHINH, attachment(book("tls"), rfc2231("a.xlsx"))))
    before = len(setup.imap.logins())
    report = setup.fetch(config=MailConfig(OFFICE, "", plain, None, mailbox=setup.mailbox))
    assert len(report.saved) == 1
    assert (
        ", TLS," in setup.imap.logins()[before]
    )  # logged in after STARTTLS (Dovecot: "TLS"; imaps: "TLS" too)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"user": "nobody@dongtrieu.test"}, "không chấp nhận tên đăng nhập hoặc mật khẩu"),
        ({"ca_file": None}, "Chứng chỉ bảo mật"),
        ({"port": "plain"}, "Không thiết lập được kết nối bảo mật"),  # TLS spoken to the STARTTLS port
    ],
)
def test_connection_problems_are_explained(setup, change, says):
    server = setup.config.imap
    fields = {
        k: getattr(server, k)
        for k in ("protocol", "host", "port", "security", "user", "password_env", "ca_file")
    } | change
    if fields["port"] == "plain":
        fields["port"] = setup.imap.imap_port
    with pytest.raises(MailError, match=says):
        setup.fetch(config=MailConfig(OFFICE, "", Server(**fields, timeout=10), None, mailbox=setup.mailbox))
    assert listing(setup.inbox) == {}


def test_hostile_mail_is_reported_and_nothing_is_written_outside_the_inbox(setup, tmp_path):
    many = [attachment(book(f"m{i}"), rfc2231(f"bao-cao-{i}.xlsx")) for i in range(150)]
    bomb = zipped({"bom.xlsx": b"\0" * 3_000_000})  # 3 MB of zeros in 3 KB
    total = zipped({f"p{i}.xlsx": b"\0" * 1_000_000 for i in range(5)})
    nested = zipped({"trong.zip": zipped({"x.xlsx": book("n")})})
    evil_zip = zipped({"../../escaped.xlsx": book("z1"), "/tmp/absolute.xlsx": book("z2")})
    setup.deliver(
        message(DUC_CHINH, *many, subject="150 tệp"),
        message(DUC_CHINH, attachment(book("big") * 2000, rfc2231("lớn.xlsx"))),
        message(DUC_CHINH, attachment(bomb, rfc2231("bom.zip"), "application/zip")),
        message(DUC_CHINH, attachment(total, rfc2231("nhieu.zip"), "application/zip")),
        message(DUC_CHINH, attachment(nested, rfc2231("long.zip"), "application/zip")),
        message(DUC_CHINH, attachment(b"PK\x03\x04 not a zip", rfc2231("hong.zip"), "application/zip")),
        message(DUC_CHINH, attachment(evil_zip, rfc2231("evil.zip"), "application/zip")),
        message(DUC_CHINH, attachment(book("dots"), rfc2231("../../../outside.xlsx"))),
        message(DUC_CHINH, attachment(book("ctl"), rfc2231("bao\x1b[2Jcao\r\n.xlsx"))),
        message(
            DUC_CHINH,
            XLSX_PART + rfc2231("cut.xlsx") + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"UEsDBBQAAAAIA*%$\r\nAAA\r\n",
        ),  # a truncated, mangled attachment
        message(DUC_CHINH, attachment(book("after"), rfc2231("sau cùng.xlsx")), subject="Vẫn lấy được"),
    )
    limits = MailLimits(max_attachment=200_000, max_files=100, max_zip_total=4_000_000)
    report = setup.fetch(limits=limits)
    rules = report.findings[["rule", "file"]].values.tolist()
    assert ["mail-too-many-attachments", ""] in rules
    assert ["mail-attachment-too-large", "lớn.xlsx"] in rules
    assert ["mail-zip-refused", "bom.zip/bom.xlsx"] in rules  # ratio 1000: a bomb
    assert ["mail-zip-refused", "nhieu.zip"] in rules  # 5 MB inflated > 4 MB
    assert ["mail-zip-refused", "long.zip/trong.zip"] in rules
    assert ["mail-zip-refused", "hong.zip"] in rules
    assert ["mail-name-unsafe", "evil.zip/../../escaped.xlsx"] in rules
    assert ["mail-name-unsafe", "evil.zip//tmp/absolute.xlsx"] in rules
    assert ["mail-name-unsafe", "../../../outside.xlsx"] in rules
    assert ["mail-attachment-broken", "cut.xlsx"] in rules
    saved = listing(setup.inbox)
    assert len([n for n in saved if "bao-cao-" in n]) == 100
    for part in ("escaped.xlsx", "absolute.xlsx", "outside.xlsx", "bao[2Jcao.xlsx", "sau cùng.xlsx"):
        assert any(n.endswith("_" + part) for n in saved), part
    written = {p for p in tmp_path.rglob("*") if p.is_file()} | set(Path("/tmp").glob("absolute.xlsx"))
    assert all(
        p.parent == setup.inbox or p == setup.store_path or p.name.startswith("lich-su") for p in written
    )
    assert not any(n for n in saved if "\x1b" in n or "\r" in n or "/" in n)


def test_a_message_too_large_is_not_downloaded(setup):
    setup.deliver(
        message(DUC_CHINH, attachment(book("x") * 100, rfc2231("a.xlsx"))),
        message(DUC_CHINH, attachment(book("y"), rfc2231("b.xlsx"))),
    )
    report = setup.fetch(limits=MailLimits(max_message=20_000))
    assert report.findings["rule"].tolist() == ["mail-message-too-large"]
    assert [m.status for m in report.messages] == ["too-large", "done"]
    assert len(listing(setup.inbox)) == 1
    assert setup.fetch().looked_at == 0  # remembered: not looked at again


def test_vietnamese_names_inside_zips_from_windows_and_7zip(setup):
    raw = "Báo cáo Đư\u0301c Chính.xlsx".encode("cp1258")
    setup.deliver(
        message(DUC_CHINH, attachment(legacy_zip(raw, book("w")), rfc2231("windows.zip"), "application/zip")),
        message(
            DUC_CHINH,
            attachment(
                zipped({"Báo cáo Mạo Khê.xlsx": book("7z")}),
                rfc2231("7z.zip"),
                "application/x-zip-compressed",
            ),
        ),
    )
    report = setup.fetch()
    assert sorted(o for m in report.messages for o, _ in m.saved) == [
        "7z.zip/Báo cáo Mạo Khê.xlsx",
        "windows.zip/Báo cáo Đức Chính.xlsx",
    ]


def test_a_message_without_message_id_is_processed_once(setup):
    setup.deliver(message(DUC_CHINH, attachment(book("noid"), rfc2231("a.xlsx")), message_id=None))
    assert len(setup.fetch().saved) == 1
    setup.imap.recreate(_utf7(setup.mailbox))
    setup.deliver(message(DUC_CHINH, attachment(book("noid"), rfc2231("a.xlsx")), message_id=None))
    again = setup.fetch()
    assert again.looked_at == 1 and again.saved == [] and not again.messages


def test_config_file(tmp_path, monkeypatch):
    path = tmp_path / "tonghop.toml"
    path.write_text(
        '[mail]\naddress = "pgd@x.vn"\nname = "Phòng GD&ĐT"\n[imap]\nhost = "imap.x.vn"\n'
        '[smtp]\nhost = "smtp.x.vn"\nsecurity = "starttls"\nper_minute = 10\n'
        '[deadlines]\n"2020-H1" = 2020-07-20\n',
        encoding="utf-8",
    )
    config = load_config(path)
    assert (config.imap.port, config.imap.security, config.imap.user) == (993, "tls", "pgd@x.vn")
    assert (config.smtp.port, config.per_minute) == (587, 10.0)
    assert config.deadlines == {"2020-H1": dt.date(2020, 7, 20)}
    monkeypatch.delenv("TONGHOP_IMAP_PASSWORD", raising=False)
    monkeypatch.delenv("TONGHOP_MAIL_PASSWORD", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "keyring", None)  # no keyring on this machine
    from pipeline.mail.config import ConfigError

    with pytest.raises(ConfigError, match="TONGHOP_IMAP_PASSWORD"):
        config.imap.password()
    monkeypatch.setenv("TONGHOP_MAIL_PASSWORD", "pw")
    assert config.imap.password() == "pw"
    path.write_text('[mail]\naddress = "pgd@x.vn"\n[imap]\nhost = "h"\npassword = "lộ"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="không ghi mật khẩu"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"tonghop\.example\.toml"):
        load_config(tmp_path / "none.toml")


def nested(sender: str, depth: int) -> bytes:
    """A message whose body is `depth` multiparts one inside the other: deeper than Python's parser can go."""
    head = f"From: <{sender}>\r\nTo: {OFFICE}\r\nSubject: =?UTF-8?B?"
    head += base64.b64encode("Lồng sâu".encode()).decode() + "?=\r\nMIME-Version: 1.0\r\n"
    body = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth))
    body += "Content-Type: text/plain\r\n\r\nx\r\n" + "".join(f"--b{i}--\r\n" for i in reversed(range(depth)))
    return (head + body).encode()


def test_a_message_the_parser_chokes_on_is_reported_and_the_fetch_goes_on(setup):
    setup.deliver(
        nested(DUC_CHINH, 2000),
        message(DUC_CHINH, attachment(book("2"), rfc2231("b.xlsx"))),
    )
    report = setup.fetch()
    assert report.findings[["rule", "detail", "value"]].values.tolist() == [
        ["mail-unreadable", "RecursionError", DUC_CHINH]]  # told by its sender, read from its headers
    assert len(report.saved) == 1
    assert setup.fetch().looked_at == 0  # marked done: it never blocks the mailbox


def test_a_body_part_the_parser_cannot_decode_does_not_cost_the_attachments(setup):
    """A text body whose charset is written the RFC 2231 way, in 8 bits: asking the parser for its text
    raises; the attachments beside it are still saved."""
    odd = message(DUC_CHINH, attachment(book("3"), rfc2231("c.xlsx")))
    odd = odd.replace(b"Content-Type: text/plain; charset=utf-8",
                      b"Content-Type: text/plain; charset*=utf-8''utf-8")
    setup.deliver(odd)
    report = setup.fetch()
    assert report.findings.empty
    assert [name.endswith("_c.xlsx") for name in report.saved] == [True]


def test_the_example_config_is_valid():
    config = load_config(Path(__file__).resolve().parents[1] / "tonghop.example.toml")
    assert config.imap.host == "imap.gmail.com" and config.smtp.port == 465 and "2020-H1" in config.deadlines


def test_tonghop_fetch_command(setup, tmp_path, capsys):
    import pandas as pd

    from pipeline.cli.commands import main
    from pipeline.definition import DEFAULT_UNITS

    units = pd.read_csv(DEFAULT_UNITS, dtype=str, keep_default_na=False)
    units["email"] = units["unit_code"].map({"07093": f"Khác@x.test; {DUC_CHINH.upper()}"}).fillna("")
    units.to_csv(tmp_path / "units.csv", index=False)
    config = tmp_path / "tonghop.toml"
    config.write_text(
        f'[mail]\naddress = "{OFFICE}"\n[imap]\nhost = "127.0.0.1"\nport = {setup.imap.imap_port}\n'
        f'security = "starttls"\nmailbox = "{setup.mailbox}"\nca_file = "{setup.imap.cert}"\n',
        encoding="utf-8",
    )
    setup.deliver(message(DUC_CHINH, attachment(book("cli"), rfc2047("Báo cáo Đức Chính.xlsx"))))
    args = [
        "fetch",
        "--period",
        "2020-H1",
        "--units",
        str(tmp_path / "units.csv"),
        "--config",
        str(config),
        "--store",
        str(setup.store_path),
        "--inbox",
        str(setup.inbox),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Phường Đức Chính" in out and "Báo cáo Đức Chính.xlsx" in out and "Đã lưu 1 tệp" in out
    assert main(args) == 0 and "0 thư mới" in capsys.readouterr().out
