"""The letters `tonghop send` writes to wards: the result of the check with the feedback workbook, or a
polite reminder with the ward's template. Each is a well-formed email: UTF-8, encoded headers and
file names (RFC 2047/2231), a plain-text body, Message-ID and Date, the right MIME types.

Pure functions: data in, `email.message.EmailMessage` out. The words come from the definition (the
report's title, the office) and the findings' own messages.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from dataclasses import dataclass
from email.message import EmailMessage

from pipeline.findings import show

XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
POLICY = email.policy.SMTP.clone(max_line_length=78)  # CRLF line ends, as they go over the wire


@dataclass(frozen=True)
class Sender:
    address: str
    name: str  # e.g. "Phòng Giáo dục và Đào tạo Thị xã Đông Triều"


def report_name(title: str) -> str:
    """The report's title as a sentence writes it: "BÁO CÁO KẾT QUẢ ..." → "Báo cáo kết quả ..."."""
    text = " ".join(title.split())
    return text[:1].upper() + text[1:].lower() if text.isupper() else text


def result_words(errors: int) -> str:
    """The result a subject shows: "Đạt" or "Có n lỗi cần sửa"."""
    return "Đạt" if errors == 0 else f"Có {errors} lỗi cần sửa"


def deadline_sentence(deadline: dt.date | None, today: dt.date, *, resend: bool) -> str:
    """A reminder of the deadline (or a request to be quick when none is known or it has passed)."""
    what = "gửi lại báo cáo đã sửa" if resend else "nộp báo cáo"
    if deadline is None:
        return f"Đề nghị đơn vị {what} sớm để Phòng kịp tổng hợp."
    day = deadline.strftime("%d/%m/%Y")
    if deadline < today:
        return f"Hạn {what} là ngày {day} (đã qua); đề nghị đơn vị {what} sớm nhất có thể."
    return f"Hạn {what}: ngày {day}."


def _where(f: dict) -> str:
    sheet, cell = f.get("sheet") or "", f.get("cell") or ""
    if sheet and cell:
        return f"Trang «{sheet}», ô {cell}"
    if sheet:
        return f"Trang «{sheet}»"
    return f"Tệp «{f.get('file')}»" if f.get("file") else "Cả tệp"


def finding_lines(findings: list[dict]) -> list[str]:
    """A numbered plain-text list: where, what is wrong, the value written, the right figure where
    known ("Giá trị đúng") and a likely reading to confirm ("Có thể là")."""
    lines = []
    for n, f in enumerate(findings, 1):
        lines.append(f"{n}. {_where(f)}:")
        lines.append(f"   {f.get('message') or ''}")
        if show(f.get("value")):
            lines.append(f"   Đơn vị đã ghi: {show(f.get('value'))}")
        if show(f.get("expected")):
            lines.append(f"   Giá trị đúng: {show(f.get('expected'))}")
        if show(f.get("suggestion")):
            lines.append(f"   Có thể là: {show(f.get('suggestion'))}")
    return lines


def _base(sender: Sender, to: list[tuple[str, str]], subject: str, when: dt.datetime) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = email.utils.formataddr((sender.name, sender.address)) if sender.name else sender.address
    msg["To"] = ", ".join(email.utils.formataddr(pair) for pair in to)
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(when)
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.address.rpartition("@")[2] or None)
    msg["X-Mailer"] = "tonghop"
    return msg


def _attach(msg: EmailMessage, attachment: tuple[str, bytes] | None) -> None:
    """Attach a workbook; a Vietnamese name goes in Content-Disposition as RFC 2231 says (Outlook since
    2007, Gmail, Thunderbird and Apple Mail read it)."""
    if attachment is not None:
        msg.add_attachment(attachment[1], maintype=XLSX[0], subtype=XLSX[1], filename=attachment[0])


def _signature(sender: Sender) -> list[str]:
    return [
        "",
        "Trân trọng,",
        sender.name or sender.address,
        "",
        "(Thư này do chương trình tổng hợp báo cáo soạn từ kết quả kiểm tra của Phòng. Nếu có điều chưa "
        "rõ, đề nghị đơn vị trả lời thư này.)",
    ]


def feedback_letter(
    *,
    sender: Sender,
    to: list[tuple[str, str]],
    unit_name: str,
    report: str,
    period_label: str,
    file: str | None,
    errors: int,
    warnings: int,
    findings: list[dict],
    attachment: tuple[str, bytes] | None,
    deadline: dt.date | None,
    when: dt.datetime,
) -> EmailMessage:
    """The result of the check for a ward that reported: errors and warnings listed, the feedback
    workbook (name, bytes) attached when there is one."""
    subject = f"{report} {period_label} - {unit_name}: {result_words(errors)}"
    msg = _base(sender, to, subject, when)
    errs = [f for f in findings if f.get("severity") == "error"]
    warns = [f for f in findings if f.get("severity") != "error"]
    body = [f"Kính gửi: {unit_name},", ""]
    body.append(
        f"{sender.name or 'Phòng'} đã nhận và kiểm tra {report[:1].lower() + report[1:]} {period_label} "
        f"của đơn vị" + (f" (tệp «{file}»)." if file else ".")
    )
    body.append("")
    if errors == 0:
        body.append(
            "Kết quả: Đạt. Báo cáo của đơn vị không có lỗi"
            + (f"; có {warnings} điểm đề nghị đơn vị kiểm tra lại." if warnings else ". Cảm ơn đơn vị.")
        )
    else:
        body.append(
            f"Kết quả: có {errors} lỗi cần sửa"
            + (f" và {warnings} điểm cần kiểm tra lại." if warnings else ".")
        )
    if errs:
        body += ["", f"LỖI CẦN SỬA ({len(errs)})", *finding_lines(errs)]
    if warns:
        body += ["", f"CẦN KIỂM TRA LẠI ({len(warns)})", *finding_lines(warns)]
    body.append("")
    if attachment is not None and (errs or warns):
        body.append(
            f"Tệp đính kèm «{attachment[0]}» là báo cáo của đơn vị, trong đó ô có lỗi được tô đỏ, ô cần "
            "kiểm tra được tô vàng cam, kèm ghi chú. Đề nghị đơn vị sửa ngay trên tệp này rồi gửi lại "
            "cho Phòng."
        )
    elif attachment is not None:
        body.append(
            f"Tệp đính kèm «{attachment[0]}» là báo cáo của đơn vị như Phòng đã ghi nhận, để đơn vị lưu."
        )
    if errors:
        body.append(deadline_sentence(deadline, when.date(), resend=True))
    msg.set_content("\n".join(body + _signature(sender)) + "\n", charset="utf-8", cte="quoted-printable")
    _attach(msg, attachment)
    return msg


def reminder_letter(
    *,
    sender: Sender,
    to: list[tuple[str, str]],
    unit_name: str,
    report: str,
    period_label: str,
    attachment: tuple[str, bytes] | None,
    deadline: dt.date | None,
    when: dt.datetime,
) -> EmailMessage:
    """A polite reminder for a ward that has not reported, with its template attached."""
    subject = f"Nhắc nộp {report[:1].lower() + report[1:]} {period_label} - {unit_name}"
    msg = _base(sender, to, subject, when)
    body = [
        f"Kính gửi: {unit_name},",
        "",
        f"Đến nay {sender.name or 'Phòng'} chưa nhận được {report[:1].lower() + report[1:]} {period_label} "
        "của đơn vị.",
        deadline_sentence(deadline, when.date(), resend=False),
        "",
    ]
    if attachment is not None:
        body.append(
            f"Đề nghị đơn vị điền số liệu vào mẫu báo cáo gửi kèm thư này (tệp «{attachment[0]}», đã "
            "ghi sẵn tên đơn vị và kỳ báo cáo) rồi gửi lại cho Phòng qua thư điện tử."
        )
    body.append("Nếu đơn vị đã gửi báo cáo, xin cảm ơn và đề nghị bỏ qua thư này.")
    msg.set_content("\n".join(body + _signature(sender)) + "\n", charset="utf-8", cte="quoted-printable")
    _attach(msg, attachment)
    return msg
