"""`tonghop send`: one letter per ward from a consolidate run's output folder, written as .eml files for
the officer to review, and sent over SMTP when asked.

`prepare_letters` reads `<out>/<period>/manifest.json` (its `units` list: status, file, counts,
feedback workbook) and `findings.json`, and the units' addresses (units list, column `email`); a ward
that reported gets the result with its feedback workbook, a ward that has not gets a reminder with
its template (`input_templates/<period>/<code>-<slug>.xlsx`). `send_letters` sends them (TLS or
STARTTLS, AUTH), at most `per_minute` a minute, and records every recipient's outcome in the store:
a letter already sent to a recipient (same content) is never sent to it again, so a rerun sends only
what was refused, left to retry, or not yet sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pandas as pd

from pipeline.atomic import write_text
from pipeline.definition import Definition
from pipeline.history.store import Store, now
from pipeline.mail.config import MailConfig, Server
from pipeline.mail.fetch import MailError, explain_mail_error
from pipeline.mail.letters import Sender, feedback_letter, reminder_letter, report_name

MISSING = "Chưa nộp"


class SendError(Exception):
    """The run's outputs cannot be used to write letters; the message (Vietnamese) says what to do."""


@dataclass
class Letter:
    unit_code: str
    unit_name: str
    kind: str  # "feedback" | "reminder"
    to: list[str]
    message: EmailMessage
    content_key: str
    attachments: list[dict] = field(default_factory=list)  # {"name", "sha256"}
    eml_path: Path | None = None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])


@dataclass
class Outcome:
    unit_code: str
    unit_name: str
    recipient: str
    status: str  # "sent" | "refused" | "retry" | "skipped" (sent by an earlier run)
    detail: str = ""


def _read_json(path: Path, period: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SendError(
            f"Chưa có kết quả tổng hợp kỳ {period} ({path} không có). Đề nghị chạy "
            f"tonghop consolidate --period {period} trước."
        ) from None
    except (OSError, ValueError) as exc:
        raise SendError(
            f"Không đọc được {path} ({exc.__class__.__name__}). Đề nghị chạy lại tonghop consolidate."
        ) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key(*parts: object) -> str:
    return _sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode())


def _deadline(period: str, config: MailConfig, given: str | None) -> dt.date | None:
    """The deadline a letter reminds of: --deadline, else tonghop.toml's [deadlines], else the periods file
    (schemas/periods.yaml) that `consolidate` uses too."""
    from pipeline.definition import DefinitionError
    from pipeline.periods import load_deadlines, parse_deadline

    if given:
        try:
            return parse_deadline(given)
        except DefinitionError:
            raise SendError(f"Hạn nộp «{given}» không hợp lệ: viết 25/06/2020 hoặc 2020-06-25.") from None
    return config.deadlines.get(period) or load_deadlines().for_period(period)


def _template(definition: Definition, units: pd.DataFrame, code: str, folder: Path, period: str) -> Path:
    """The unit's template in `folder`, rendered there first when absent (as `tonghop templates` does)."""
    from pipeline.writers.template import render_workbook

    unit = units.set_index("unit_code").loc[code].to_dict() | {"unit_code": code}
    path = folder / f"{unit['slug']}.xlsx"
    if not path.is_file():
        render_workbook(definition, path, period=period, unit=unit)
    return path


def prepare_letters(
    definition: Definition,
    units: pd.DataFrame,
    addresses: dict[str, list[str]],
    config: MailConfig,
    out_dir: Path,
    templates: Path,
    period: str,
    *,
    deadline: str | None = None,
    when: dt.datetime | None = None,
) -> tuple[list[Letter], list[str]]:
    """The letters for `period` from the outputs in `out_dir` (= <out>/<period>); returns (letters,
    Vietnamese lines about units that get none). Raises SendError when the outputs are missing."""
    manifest = _read_json(out_dir / "manifest.json", period)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("units"), list):
        raise SendError(
            f"Kết quả tổng hợp trong {out_dir} do phiên bản cũ tạo ra (manifest.json chưa có danh sách "
            f"đơn vị). Đề nghị chạy lại tonghop consolidate --period {period}."
        )
    if manifest.get("period") not in (None, period):
        raise SendError(
            f"{out_dir / 'manifest.json'} là kết quả của kỳ {manifest.get('period')}, không phải {period}."
        )
    findings = _read_json(out_dir / "findings.json", period)
    by_unit: dict[str, list[dict]] = {}
    for f in findings if isinstance(findings, list) else []:
        if isinstance(f, dict) and f.get("unit_code"):
            by_unit.setdefault(str(f["unit_code"]), []).append(f)
    inputs = {i.get("file"): i.get("sha256") for i in manifest.get("inputs", []) if isinstance(i, dict)}
    when = when or dt.datetime.now().astimezone()
    sender = Sender(config.address, config.name)
    report, label = report_name(definition.title), definition.period_label(period)
    due = _deadline(period, config, deadline)
    letters, problems = [], []
    for u in manifest["units"]:
        code, name = str(u.get("unit_code")), str(u.get("unit_name") or u.get("unit_code"))
        to = addresses.get(code, [])
        if not to:
            problems.append(
                f"{name} ({code}) chưa có địa chỉ thư trong cột email của danh sách đơn vị: không soạn thư."
            )
            continue
        recipients = [(name, a) for a in to]
        if u.get("status") == MISSING:
            path = _template(definition, units, code, templates / period, period)
            data = path.read_bytes()
            attached = (f"{name} - mẫu báo cáo {period}.xlsx", data)
            msg = reminder_letter(
                sender=sender,
                to=recipients,
                unit_name=name,
                report=report,
                period_label=label,
                attachment=attached,
                deadline=due,
                when=when,
            )
            key = _key("reminder", period, code, due)
            kind = "reminder"
        else:
            mine = by_unit.get(code, [])
            attached = None
            if u.get("feedback"):
                try:
                    attached = (
                        f"{name} - góp ý báo cáo {period}.xlsx",
                        (out_dir / u["feedback"]).read_bytes(),
                    )
                except OSError:
                    problems.append(
                        f"{name}: không tìm thấy tệp phản hồi {u['feedback']}; thư không có tệp đính kèm."
                    )
            msg = feedback_letter(
                sender=sender,
                to=recipients,
                unit_name=name,
                report=report,
                period_label=label,
                file=u.get("file"),
                errors=int(u.get("errors") or 0),
                warnings=int(u.get("warnings") or 0),
                findings=mine,
                attachment=attached,
                deadline=due,
                when=when,
            )
            key = _key(
                "feedback",
                period,
                code,
                u.get("status"),
                inputs.get(u.get("file")),
                [(f.get("rule"), f.get("cell"), f.get("message")) for f in mine],
            )
            kind = "feedback"
        files = [{"name": attached[0], "sha256": _sha256(attached[1])}] if attached else []
        letters.append(Letter(code, name, kind, to, msg, key, files))
    return letters, problems


def write_letters(letters: list[Letter], folder: Path) -> Path:
    """Write each letter as `<folder>/<code>-<kind>.eml` (atomically); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for letter in letters:
        letter.eml_path = (
            folder / f"{letter.unit_code}-{'phan-hoi' if letter.kind == 'feedback' else 'nhac-nop'}.eml"
        )
        write_text(
            letter.eml_path, letter.message.as_bytes().decode("ascii", "surrogateescape"), encoding="ascii"
        )
    return folder


def connect_smtp(server: Server, password: str) -> smtplib.SMTP:
    """Connect and log in (TLS from the start, or STARTTLS before AUTH); raises MailError."""
    try:
        if server.security == "tls":
            conn = smtplib.SMTP_SSL(
                server.host, server.port, timeout=server.timeout, context=server.tls_context()
            )
        else:
            conn = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
            conn.ehlo()
            if not conn.has_extn("starttls"):
                conn.quit()
                raise MailError(
                    f"Máy chủ SMTP {server.host}:{server.port} không hỗ trợ STARTTLS; mật khẩu không "
                    'được gửi đi khi chưa mã hóa. Thử security = "tls" với cổng 465.'
                )
            conn.starttls(context=server.tls_context())
        conn.ehlo()
        _login(conn, server.user, password)
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError(explain_mail_error(Exception("AUTHENTICATIONFAILED"), server)) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(explain_mail_error(exc, server)) from exc
    return conn


def _login(conn: smtplib.SMTP, user: str, password: str) -> None:
    """AUTH PLAIN in UTF-8 where the server offers it (smtplib encodes logins as ASCII, and after a
    refused PLAIN tries other mechanisms one after the other), else smtplib's choice."""
    if "PLAIN" not in conn.esmtp_features.get("auth", "").upper().split():
        conn.login(user, password)
        return
    import base64

    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
    code, answer = conn.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, answer)


def _answer(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(text.split())}"[:300]


def _already_sent(store: Store, period: str, letter: Letter) -> set[str]:
    rows = store.conn.execute(
        "SELECT recipient FROM mail_sent WHERE period = ? AND unit_code = ? AND kind = ? AND content_key = ? "
        "AND status = 'sent'",
        (period, letter.unit_code, letter.kind, letter.content_key),
    )
    return {r[0] for r in rows}


def send_letters(
    letters: list[Letter],
    config: MailConfig,
    store: Store,
    period: str,
    *,
    password: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Send what was not sent yet, each recipient's outcome recorded; returns the outcomes.

    A 5xx answer refuses a recipient ("refused"), a 4xx answer or a lost connection leaves it to retry
    ("retry"); both are tried again by the next run. Raises MailError when the server cannot be
    reached or refuses the login (nothing is recorded then)."""
    server = config.smtp
    if server is None:
        raise MailError(f"Tệp cấu hình {config.path.name} chưa có mục [smtp] (máy chủ gửi thư).")
    gap = 60.0 / config.per_minute if config.per_minute > 0 else 0.0
    outcomes: list[Outcome] = []
    pending = []
    for letter in letters:
        done = _already_sent(store, period, letter)
        outcomes += [
            Outcome(letter.unit_code, letter.unit_name, a, "skipped") for a in letter.to if a in done
        ]
        todo = [a for a in letter.to if a not in done]
        if todo:
            pending.append((letter, todo))
    if not pending:
        return outcomes
    conn: smtplib.SMTP | None = connect_smtp(server, password)
    last = None
    try:
        for letter, todo in pending:
            if conn is None:  # the connection was lost: the rest is left to the next run
                results = {a: ("retry", "mất kết nối với máy chủ") for a in todo}
            else:
                if last is not None and gap:
                    wait = gap - (clock() - last)
                    if wait > 0:
                        sleep(wait)
                last = clock()
                results, lost = _send_one(conn, config.address, letter, todo)
                if lost:
                    conn = None
            with store.transaction() as tx:
                for address, (status, detail) in results.items():
                    tx.execute(
                        "INSERT INTO mail_sent (period, unit_code, kind, recipient, subject, content_key, "
                        "attachments, eml_path, message_id, status, detail, at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            period,
                            letter.unit_code,
                            letter.kind,
                            address,
                            letter.subject,
                            letter.content_key,
                            json.dumps(letter.attachments, ensure_ascii=False),
                            str(letter.eml_path) if letter.eml_path else None,
                            str(letter.message["Message-ID"]),
                            status,
                            detail or None,
                            now(),
                        ),
                    )
            outcomes += [
                Outcome(letter.unit_code, letter.unit_name, a, s, d) for a, (s, d) in results.items()
            ]
    finally:
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
    return outcomes


def _send_one(conn: smtplib.SMTP, from_addr: str, letter: Letter, todo: list[str]):
    """Send `letter` to the addresses `todo`; returns ({address: (status, detail)}, connection lost)."""
    try:
        refused = conn.send_message(letter.message, from_addr=from_addr, to_addrs=todo)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        status = "refused" if 500 <= exc.smtp_code < 600 else "retry"
        _reset(conn)
        return {a: (status, _answer(exc.smtp_code, exc.smtp_error)) for a in todo}, False
    except (TimeoutError, smtplib.SMTPServerDisconnected, OSError, ssl.SSLError) as exc:
        return {a: ("retry", f"mất kết nối với máy chủ ({exc.__class__.__name__})") for a in todo}, True
    out = {}
    for a in todo:
        if a in refused:
            code, text = refused[a]
            out[a] = ("refused" if 500 <= code < 600 else "retry", _answer(code, text))
        else:
            out[a] = ("sent", "")
    return out, False


def _reset(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError, smtplib.SMTPException):
        conn.rset()
