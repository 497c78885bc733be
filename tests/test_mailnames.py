"""Attachment names as mail clients send them: each encoding, the broken forms, and unsafe names."""

import base64
import email
import unicodedata
import urllib.parse

import pytest

from pipeline.mail.names import decode_filename, parse_message, safe_name, saved_name

NAME = "Báo cáo Đức Chính.xlsx"
UTF8 = NAME.encode("utf-8")
CP1258 = "Báo cáo Đư\u0301c Chính.xlsx".encode("cp1258")  # Windows-1258 writes ứ as ư + a combining tone


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _part(header: bytes) -> email.message.Message:
    ctype = b"" if b"Content-Type" in header else b"Content-Type: application/octet-stream\r\n"
    return parse_message(ctype + header + b"\r\nContent-Transfer-Encoding: base64\r\n\r\nAA==\r\n")


HALF = len("Báo cáo Đ".encode()) + 1  # cuts "ứ" (3 bytes in UTF-8) in two

CASES = [
    ("rfc2231", b"Content-Disposition: attachment; filename*=UTF-8''" + urllib.parse.quote(UTF8).encode()),
    (
        "rfc2231 continued",
        b"Content-Disposition: attachment; filename*0*=UTF-8''"
        + urllib.parse.quote(UTF8[:8]).encode()
        + b"; filename*1*="
        + urllib.parse.quote(UTF8[8:]).encode(),
    ),
    (
        "rfc2231 windows-1258",
        b"Content-Disposition: attachment; filename*=windows-1258''" + urllib.parse.quote(CP1258).encode(),
    ),
    (
        "rfc2047 base64 in quotes (Outlook, Gmail)",
        b'Content-Disposition: attachment; filename="=?UTF-8?B?' + _b64(UTF8).encode() + b'?="',
    ),
    (
        "rfc2047 quoted-printable",
        b'Content-Disposition: attachment; filename="=?utf-8?Q?'
        + urllib.parse.quote(UTF8).replace("%20", "_").replace("%", "=").encode()
        + b'?="',
    ),
    (
        "rfc2047 a character split across two words",
        b'Content-Disposition: attachment; filename="=?UTF-8?B?'
        + _b64(UTF8[:HALF]).encode()
        + b"?= =?UTF-8?B?"
        + _b64(UTF8[HALF:]).encode()
        + b'?="',
    ),
    (
        "rfc2047 words without a space between",
        b'Content-Disposition: attachment; filename="=?UTF-8?B?'
        + _b64(UTF8[:HALF]).encode()
        + b"?==?UTF-8?B?"
        + _b64(UTF8[HALF:]).encode()
        + b'?="',
    ),
    (
        "rfc2047 folded over two lines",
        b'Content-Disposition: attachment;\r\n filename="=?UTF-8?B?'
        + _b64(UTF8[:12]).encode()
        + b"?=\r\n =?UTF-8?B?"
        + _b64(UTF8[12:]).encode()
        + b'?="',
    ),
    (
        "name= of Content-Type only",
        b"Content-Disposition: attachment\r\nContent-Type: application/vnd.ms-excel;"
        b' name="=?UTF-8?B?' + _b64(UTF8).encode() + b'?="',
    ),
    ("raw UTF-8 in the header", b'Content-Disposition: attachment; filename="' + UTF8 + b'"'),
    ("raw Windows-1258 in the header", b'Content-Disposition: attachment; filename="' + CP1258 + b'"'),
    (
        "UTF-8 labelled ISO-8859-1 (rfc2231)",
        b"Content-Disposition: attachment; filename*=iso-8859-1''" + urllib.parse.quote(UTF8).encode(),
    ),
    (
        "UTF-8 labelled ISO-8859-1 (rfc2047)",
        b'Content-Disposition: attachment; filename="=?iso-8859-1?B?' + _b64(UTF8).encode() + b'?="',
    ),
    (
        "decomposed (NFD, macOS)",
        b"Content-Disposition: attachment; filename*=utf-8''"
        + urllib.parse.quote(unicodedata.normalize("NFD", NAME).encode()).encode(),
    ),
    (
        "an unknown charset label",
        b"Content-Disposition: attachment; filename*=x-unknown''" + urllib.parse.quote(UTF8).encode(),
    ),
]


@pytest.mark.parametrize(("header"), [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_decode_filename(header):
    assert decode_filename(_part(header)) == NAME


def test_no_name_and_plain_ascii():
    assert decode_filename(_part(b"Content-Disposition: inline")) is None
    assert decode_filename(_part(b'Content-Disposition: attachment; filename="bao-cao.xls"')) == "bao-cao.xls"


@pytest.mark.parametrize(
    ("name", "safe", "unsafe"),
    [
        ("Báo cáo.xlsx", "Báo cáo.xlsx", ""),
        ("../../etc/cron.d/x.xlsx", "x.xlsx", "có đường dẫn thư mục"),
        ("C:\\Windows\\System32\\x.xlsx", "x.xlsx", "có đường dẫn thư mục"),
        ("/tmp/abs.xlsx", "abs.xlsx", "có đường dẫn thư mục"),
        ("bao\x00cao\x1b[31m.xlsx", "baocao[31m.xlsx", "có ký tự điều khiển"),
        ("báo cáo\u202excod.xlsx", "báo cáoxcod.xlsx", "có ký tự điều khiển"),
        ('a:b?"c"<d>|*.xlsx', "a_b__c__d___.xlsx", "có ký tự không được phép trong tên tệp"),
        ("CON.xlsx", "_CON.xlsx", "trùng tên thiết bị của Windows"),
        ("  .hidden.xlsx. ", "hidden.xlsx", ""),
        ("..", "tep-dinh-kem", ""),
        ("", "tep-dinh-kem", ""),
    ],
)
def test_safe_name(name, safe, unsafe):
    assert safe_name(name) == (safe, unsafe)


def test_saved_name_shows_date_sender_and_original():
    import datetime as dt

    when = dt.datetime(2020, 7, 15, 9, 30)
    assert (
        saved_name(when, "07093-duc-chinh", NAME) == "2020-07-15_0930_07093-duc-chinh_Báo cáo Đức Chính.xlsx"
    )
    long = saved_name(when, "a@b.vn", "x" * 300 + ".xls")
    assert long.endswith("x.xls") and len(long) < 140
