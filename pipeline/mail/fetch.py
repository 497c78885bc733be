"""`tonghop fetch`: save the spreadsheets the wards emailed into the period's inbox.

`fetch_mail(...)` logs in to the office mailbox over IMAP (TLS, or STARTTLS before the login), looks
at the messages that arrived since the last fetch (UIDVALIDITY and the last UID are kept in the store
per login and mailbox), and saves each spreadsheet attachment (and those inside a .zip) as
`<inbox>/<date>_<sender>_<original name>`, with the message's date as the file's modification time
and its received time in the store. Mail is read with BODY.PEEK: nothing is flagged, moved or deleted
unless `mark_seen`. A message is processed once (its Message-ID, or its hash), a file's bytes are
saved once (their SHA-256). What goes wrong with one message (too large, a zip bomb, a hostile name)
is a finding for it, and the fetch goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import email
import email.message
import email.policy
import email.utils
import hashlib
import imaplib
import os
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.definition import load_rules
from pipeline.findings import Finding, make_findings
from pipeline.history.store import Store, note_file, now
from pipeline.mail.attachments import MailLimits, extract_spreadsheets
from pipeline.mail.config import MailConfig, Server
from pipeline.mail.names import decode_words, parse_headers, parse_message, safe_name, saved_name

DEFAULT_LIMITS = MailLimits()
HEADER_BATCH = 200  # UIDs whose headers are asked in one FETCH (a command line stays short)


class MailError(Exception):
    """The mailbox or mail server cannot be used; the message (Vietnamese) says why and what to do."""


@dataclass
class MessageResult:
    """What one message brought: files saved (original → saved name), duplicates, problems."""

    uid: int
    date: dt.datetime | None
    sender: str
    unit_code: str | None
    subject: str
    saved: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    status: str = "done"


@dataclass
class FetchReport:
    mailbox: str
    uidvalidity_changed: bool = False
    looked_at: int = 0  # new messages looked at
    already_seen: int = 0  # new to this mailbox's numbering but processed before (same Message-ID)
    messages: list[MessageResult] = field(default_factory=list)
    findings: pd.DataFrame | None = None

    @property
    def saved(self) -> list[str]:
        return [s for m in self.messages for _, s in m.saved]

    @property
    def duplicates(self) -> int:
        return sum(len(m.duplicates) for m in self.messages)


# --- IMAP ----------------------------------------------------------------------------------------


def explain_mail_error(exc: BaseException, server: Server) -> str:
    """A Vietnamese sentence for a connection or login failure."""
    where = f"máy chủ {server.protocol.upper()} {server.host}:{server.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"Chứng chỉ bảo mật của {where} không được xác thực ({exc.verify_message}). Kiểm tra tên máy "
            "chủ; nếu máy chủ dùng chứng chỉ riêng của cơ quan, hỏi bộ phận CNTT tệp chứng chỉ và ghi vào "
            "ca_file trong tonghop.toml."
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f'Không thiết lập được kết nối bảo mật với {where}. Kiểm tra security ("tls" cho cổng '
            f'{993 if server.protocol == "imap" else 465}, "starttls" cho cổng '
            f"{143 if server.protocol == 'imap' else 587}) trong tonghop.toml."
        )
    if isinstance(exc, socket.gaierror):
        return f"Không tìm thấy {where}. Kiểm tra tên máy chủ (host) và kết nối mạng."
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return (
            f"{where[0].upper()}{where[1:]} không trả lời. Kiểm tra kết nối mạng, tên máy chủ, cổng và "
            'security ("tls" hay "starttls") trong tonghop.toml.'
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"{where[0].upper()}{where[1:]} từ chối kết nối. Kiểm tra cổng (port) trong tonghop.toml."
    if isinstance(exc, OSError):
        return f"Không kết nối được với {where}. Kiểm tra kết nối mạng, tên máy chủ và cổng."
    text = str(exc)
    if "AUTHENTICATIONFAILED" in text.upper() or "LOGIN" in text.upper() or "AUTH" in text.upper():
        return (
            f"{where[0].upper()}{where[1:]} không chấp nhận tên đăng nhập hoặc mật khẩu của {server.user}. "
            "Với Gmail, Outlook, Yahoo, Zoho cần dùng mật khẩu ứng dụng (xem README)."
        )
    return f"{where[0].upper()}{where[1:]} báo lỗi. Chi tiết: {text[:200]}"


def connect_imap(server: Server, password: str) -> imaplib.IMAP4:
    """Connect and log in (TLS from the start, or STARTTLS before the login); raises MailError."""
    try:
        if server.security == "tls":
            conn = imaplib.IMAP4_SSL(
                server.host, server.port, ssl_context=server.tls_context(), timeout=server.timeout
            )
        else:
            conn = imaplib.IMAP4(server.host, server.port, timeout=server.timeout)
            if "STARTTLS" not in conn.capabilities:
                conn.shutdown()
                raise MailError(
                    f"Máy chủ IMAP {server.host}:{server.port} không hỗ trợ STARTTLS; mật khẩu "
                    'không được gửi đi khi chưa mã hóa. Thử security = "tls" với cổng 993.'
                )
            conn.starttls(ssl_context=server.tls_context())
        if "AUTH=PLAIN" in conn.capabilities:  # UTF-8 user names and passwords; LOGIN takes ASCII only
            conn.authenticate("PLAIN", lambda _: f"\0{server.user}\0{password}".encode())
        else:
            conn.login(server.user, password)
    except MailError:
        raise
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailError(explain_mail_error(exc, server)) from exc
    return conn


def imap_utf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3), quoted: "Báo cáo" → "B&AOE-o c&AOE-o"."""
    out, run = [], []

    def flush() -> None:
        if run:
            data = "".join(run).encode("utf-16-be")
            import base64

            out.append("&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    text = "".join(out)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ok(typ: str, data: list, what: str) -> list:
    if typ != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise MailError(f"Máy chủ IMAP không thực hiện được lệnh {what}: {detail[:200]}")
    return data


_META = re.compile(rb"(UID|RFC822\.SIZE)\s+(\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE\s+"([^"]+)"')


def _headers(conn: imaplib.IMAP4, uids: list[int]) -> dict[int, dict]:
    """uid → {"size", "internaldate", "message_id"} for `uids`, asked in batches."""
    out: dict[int, dict] = {}
    for start in range(0, len(uids), HEADER_BATCH):
        batch = ",".join(str(u) for u in uids[start : start + HEADER_BATCH])
        data = _ok(
            *conn.uid("FETCH", batch, "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"),
            "FETCH",
        )
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta = dict((k.decode(), int(v)) for k, v in _META.findall(item[0]))
            if "UID" not in meta:
                continue
            when = _INTERNALDATE.search(item[0])
            header = parse_message(item[1] or b"")
            out[meta["UID"]] = {
                "size": meta.get("RFC822.SIZE", 0),
                "internaldate": _internaldate(when.group(1)) if when else None,
                "message_id": _message_id(header.get("Message-ID")),
            }
    return out


def _internaldate(raw: bytes) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(raw.decode("ascii"), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def _message_id(value: object) -> str | None:
    """A Message-ID as compared: its header value without any whitespace (folding included)."""
    text = "".join(str(value or "").split())
    return text or None


def _body(conn: imaplib.IMAP4, uid: int) -> bytes | None:
    data = _ok(*conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "FETCH")
    for item in data:
        if isinstance(item, tuple) and len(item) > 1:
            return item[1]
    return None


# --- one message ---------------------------------------------------------------------------------


def _date_of(message, internaldate: dt.datetime | None) -> dt.datetime:
    """The message's Date (its sender's clock), else the server's arrival time, else now; aware."""
    try:
        date = email.utils.parsedate_to_datetime(_header(message, "Date"))
    except _MESSAGE_FAULTS:
        date = None
    if date is not None and date.tzinfo is None:  # "-0000": the sender did not say; take it as UTC
        date = date.replace(tzinfo=dt.UTC)
    return date or internaldate or dt.datetime.now().astimezone()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return _sha256(path.read_bytes()) if path.is_file() else None
    except OSError:
        return None


@dataclass
class _Context:
    store: Store
    inbox: Path
    period: str
    senders: dict[str, str]  # address → unit_code
    units: dict[str, dict]  # unit_code → {"unit_name", "slug"}
    limits: MailLimits
    account: str
    mailbox: str
    uidvalidity: int
    records: list[Finding] = field(default_factory=list)  # the problems met


def _save(ctx: _Context, conn, data: bytes, name: str, when: dt.datetime, who: str) -> tuple[str, bool]:
    """Save `data` as `name` (a safe base name) in the inbox unless already there; returns (the name
    under which the bytes are in the inbox, whether they were written now)."""
    sha = _sha256(data)
    target = ctx.inbox / saved_name(when.astimezone(), who, name)
    stem, suffix = target.stem, target.suffix
    n = 1
    while target.exists() or target.is_symlink():
        if not target.is_symlink() and _file_sha256(target) == sha:  # a fetch killed before it recorded it
            return target.name, False
        n += 1
        target = target.with_name(f"{stem} ({n}){suffix}")
    if target.resolve().parent != ctx.inbox.resolve():  # cannot happen with a safe base name; never trust
        raise MailError(f"tên tệp không an toàn: {name!r}")
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    stamp = when.timestamp()
    os.utime(target, (stamp, stamp))
    note_file(
        conn, sha, seen_at=now(), received_at=when.isoformat(timespec="seconds"), via="email", size=len(data)
    )
    return target.name, True


def process_message(ctx: _Context, uid: int, raw: bytes, internaldate: dt.datetime | None) -> MessageResult:
    """Save the spreadsheets of one downloaded message and record it, in one transaction of the store.

    A message the parser fails on (a body nested thousands of levels deep, a header it cannot take) is
    one `mail-unreadable` finding, told by its top-level headers where those can be read, and is marked
    done like any other: it never stops the fetch nor comes back at the next one."""
    try:
        message = parse_message(raw)
        fault = None
    except _MESSAGE_FAULTS as exc:
        message, fault = _headers_only(raw), exc
    message_id = _message_id(_header(message, "Message-ID"))
    key = message_id or f"sha256:{_sha256(raw)}"
    sender = _sender(message)
    code = ctx.senders.get(sender)
    unit = ctx.units.get(code, {}) if code else {}
    when = _date_of(message, internaldate)
    subject = decode_words(_header(message, "Subject"))[:500]
    result = MessageResult(uid, when, sender, code, subject)
    who = unit.get("slug") or sender or "khong-ro"
    base = {"value": sender, "unit_code": code, "unit_name": unit.get("unit_name")}  # every finding's sender
    with ctx.store.transaction() as conn:
        if conn.execute("SELECT 1 FROM mail_messages WHERE message_key = ?", (key,)).fetchone():
            result.status = "seen"
            _advance(conn, ctx, uid)
            return result
        try:
            if fault is not None:
                raise fault
            found = extract_spreadsheets(message, ctx.limits)
        except _MESSAGE_FAULTS as exc:
            ctx.records.append(Finding("mail-unreadable", file="", detail=type(exc).__name__, **base))
            result.status = "unreadable"
            _record_message(conn, ctx, key, uid, message_id, when, sender, subject, raw, code, "unreadable")
            _advance(conn, ctx, uid)
            return result
        _record_message(conn, ctx, key, uid, message_id, when, sender, subject, raw, code, "done")
        for problem in found.problems:
            ctx.records.append(dataclasses.replace(problem, **base))
            conn.execute(
                "INSERT INTO mail_attachments (message_key, name, unit_code, status, rule, detail) "
                "VALUES (?, ?, ?, 'refused', ?, ?)",
                (key, problem.file or "", code, problem.rule, str(problem.detail or "")),
            )
        for piece in found.pieces:
            shown = f"{piece.container}/{piece.name}" if piece.container else piece.name
            name, unsafe = safe_name(piece.name)
            sha = _sha256(piece.data)
            rule = detail = None
            if unsafe:
                rule, detail = "mail-name-unsafe", unsafe
                ctx.records.append(Finding(rule, file=shown, detail=unsafe, **base))
            before = _saved_before(conn, sha)
            if before is not None:
                result.duplicates.append((shown, before))
                status, saved = "duplicate", before
            else:
                saved, _ = _save(ctx, conn, piece.data, name, when, who)
                result.saved.append((shown, saved))
                status = "saved"
                if code is None:
                    ctx.records.append(Finding("mail-sender-unknown", file=saved, **base))
            conn.execute(
                "INSERT INTO mail_attachments (message_key, name, saved_path, sha256, size, unit_code, "
                "status, "
                "rule, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    shown,
                    str(ctx.inbox / saved) if status == "saved" else saved,
                    sha,
                    len(piece.data),
                    code,
                    status,
                    rule,
                    detail,
                ),
            )
        _advance(conn, ctx, uid)
    return result


# What the standard library's parser raises on malformed input (RecursionError: nesting deeper than the
# interpreter's stack; the others: headers and parameters it cannot take apart).
_MESSAGE_FAULTS = (RecursionError, ValueError, LookupError, TypeError, AttributeError, IndexError)


def _headers_only(raw: bytes) -> email.message.Message:
    """The top-level headers of a message the full parser failed on; an empty message if even those fail."""
    try:
        return parse_headers(raw)
    except _MESSAGE_FAULTS:
        return email.message.Message()


def _header(message, name: str) -> str:
    """A header's text, '' where it is missing or cannot be taken apart."""
    try:
        return str(message.get(name, ""))
    except _MESSAGE_FAULTS:
        return ""


def _sender(message) -> str:
    try:
        return email.utils.parseaddr(decode_words(_header(message, "From")))[1].strip().lower()
    except _MESSAGE_FAULTS:
        return ""


def _saved_before(conn, sha: str) -> str | None:
    """Where these bytes were saved by an earlier fetch, when that file is still there."""
    for (path,) in conn.execute(
        "SELECT saved_path FROM mail_attachments WHERE sha256 = ? AND status = 'saved' "
        "ORDER BY attachment_id",
        (sha,),
    ):
        if path and Path(path).is_file():
            return Path(path).name
    return None


def _record_message(conn, ctx: _Context, key, uid, message_id, when, sender, subject, raw, code, status):
    conn.execute(
        "INSERT INTO mail_messages (message_key, account, mailbox, uidvalidity, uid, message_id, date, "
        "sender, "
        "subject, sha256, size, unit_code, period, status, fetched_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            ctx.account,
            ctx.mailbox,
            ctx.uidvalidity,
            uid,
            message_id,
            when.isoformat(timespec="seconds") if when else None,
            sender,
            subject,
            _sha256(raw) if raw is not None else None,
            len(raw) if raw is not None else None,
            code,
            ctx.period,
            status,
            now(),
        ),
    )


def _advance(conn, ctx: _Context, uid: int) -> None:
    """Remember that messages up to `uid` are done (inside the message's transaction)."""
    conn.execute(
        "INSERT INTO mail_fetch_state (account, mailbox, uidvalidity, last_uid, fetched_at) "
        "VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (account, mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
        "last_uid = max(CASE WHEN mail_fetch_state.uidvalidity = excluded.uidvalidity "
        "THEN mail_fetch_state.last_uid ELSE 0 END, excluded.last_uid), fetched_at = excluded.fetched_at",
        (ctx.account, ctx.mailbox, ctx.uidvalidity, uid, now()),
    )


# --- the whole fetch -----------------------------------------------------------------------------


def fetch_mail(
    config: MailConfig,
    store: Store,
    inbox: Path,
    period: str,
    senders: dict[str, str],
    units: dict[str, dict],
    *,
    password: str,
    mark_seen: bool = False,
    limits: MailLimits = DEFAULT_LIMITS,
    on_message: Callable[[int, int], None] | None = None,
) -> FetchReport:
    """Fetch the new messages of the configured mailbox into `inbox` (created when absent).

    `senders` maps a lower-case address to its unit code; `units` maps a unit code to its "unit_name"
    and "slug". Returns a FetchReport; raises MailError when the server cannot be used (nothing is
    recorded for a message not finished). `on_message(done, total)` reports progress."""
    server = config.imap
    if server is None:
        raise MailError(f"Tệp cấu hình {config.path.name} chưa có mục [imap] (máy chủ nhận thư).")
    inbox = Path(inbox)
    try:
        inbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MailError(f"Không tạo được thư mục hộp thư «{inbox}»: {exc.strerror or exc}.") from None
    report = FetchReport(config.mailbox)
    conn = connect_imap(server, password)
    try:
        typ, _ = conn.select(imap_utf7(config.mailbox), readonly=not mark_seen)
        if typ != "OK":
            raise MailError(
                f"Không mở được thư mục «{config.mailbox}» trong hộp thư {server.user}. Kiểm tra "
                "mailbox trong tonghop.toml (mặc định INBOX)."
            )
        uidvalidity = int(conn.response("UIDVALIDITY")[1][0])
        row = store.conn.execute(
            "SELECT uidvalidity, last_uid FROM mail_fetch_state WHERE account = ? AND mailbox = ?",
            (server.account, config.mailbox),
        ).fetchone()
        last = 0
        if row is not None:
            if row[0] == uidvalidity:
                last = row[1]
            else:
                report.uidvalidity_changed = True
        found = _ok(*conn.uid("SEARCH", None, f"UID {last + 1}:*"), "SEARCH")
        uids = sorted(u for u in (int(x) for x in b" ".join(found).split()) if u > last)
        ctx = _Context(
            store, inbox, period, senders, units, limits, server.account, config.mailbox, uidvalidity
        )
        heads = _headers(conn, uids) if uids else {}
        known = _known_ids(store, [h["message_id"] for h in heads.values() if h["message_id"]])
        for n, uid in enumerate(uids, 1):
            head = heads.get(uid, {"size": 0, "internaldate": None, "message_id": None})
            report.looked_at += 1
            if head["message_id"] in known:
                report.already_seen += 1
                with store.transaction() as tx:
                    _advance(tx, ctx, uid)
            elif head["size"] > limits.max_message:
                report.messages.append(_too_large(ctx, conn, uid, head))
            else:
                raw = _body(conn, uid)
                if raw is None:
                    raise MailError(f"Máy chủ IMAP không trả về nội dung thư số {uid}.")
                result = process_message(ctx, uid, raw, head["internaldate"])
                if result.status == "seen":
                    report.already_seen += 1
                else:
                    report.messages.append(result)
            if mark_seen:
                _ok(*conn.uid("STORE", str(uid), "+FLAGS", "(\\Seen)"), "STORE")
            if on_message:
                on_message(n, len(uids))
        report.findings = make_findings(ctx.records, load_rules())
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailError(explain_mail_error(exc, server)) from exc
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()
    return report


def _known_ids(store: Store, ids: list[str]) -> set[str]:
    """The Message-IDs among `ids` that an earlier fetch already processed."""
    known: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        known.update(
            r[0]
            for r in store.conn.execute(
                f"SELECT message_key FROM mail_messages WHERE message_key IN ({marks})", chunk
            )
        )
    return known


def _too_large(ctx: _Context, conn, uid: int, head: dict) -> MessageResult:
    """Record a message too large to download (only its envelope is asked for)."""
    data = _ok(
        *conn.uid("FETCH", str(uid), "(BODY.PEEK[HEADER.FIELDS (FROM DATE SUBJECT MESSAGE-ID)])"), "FETCH"
    )
    header = next((i[1] for i in data if isinstance(i, tuple)), b"")
    message = parse_message(header)
    sender = _sender(message)
    code = ctx.senders.get(sender)
    when = _date_of(message, head["internaldate"])
    subject = decode_words(str(message.get("Subject", "")))[:500]
    key = head["message_id"] or f"uid:{ctx.account}/{ctx.mailbox}/{ctx.uidvalidity}/{uid}"
    ctx.records.append(Finding(
        "mail-message-too-large",
        file="",
        value=sender,
        unit_code=code,
        unit_name=ctx.units.get(code, {}).get("unit_name") if code else None,
        detail=f"{head['size'] / 1_000_000:.1f} MB".replace(".", ","),
        params={"limit": f"{ctx.limits.max_message / 1_000_000:.0f} MB"},
    ))
    with ctx.store.transaction() as tx:
        _record_message(tx, ctx, key, uid, head["message_id"], when, sender, subject, None, code, "too-large")
        _advance(tx, ctx, uid)
    return MessageResult(uid, when, sender, code, subject, status="too-large")
