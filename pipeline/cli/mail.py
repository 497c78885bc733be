"""The `fetch` and `send` commands (part of the CLI layer, beside cli.py): call the core, print the report.

Exit codes, as consolidate's: 0 done; 1 done but something needs the officer's attention (a mail
problem, a sender not in the units list; for send: a letter refused, to retry or without an address);
2 usage (bad argument, settings file, units list); 3 not done (mail server unreachable or login
refused, store or folder unusable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.definition import check_period, load_definition

EXIT_OK, EXIT_ATTENTION, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _units(args: argparse.Namespace):
    from pipeline.mail.addresses import sender_units, unit_addresses
    from pipeline.units import load_units

    units = load_units(args.units)
    addresses = unit_addresses(units, args.units)
    return units, addresses, sender_units(addresses)


def run_fetch(args: argparse.Namespace) -> int:
    from pipeline.history.store import StoreError, open_store
    from pipeline.mail.config import ConfigError, load_config
    from pipeline.mail.fetch import MailError, fetch_mail

    period = check_period(args.period)
    units, addresses, senders = _units(args)
    by_code = {
        r["unit_code"]: {"unit_name": r["full_name"], "slug": r["slug"]} for r in units.to_dict("records")
    }
    inbox = args.inbox or Path("inbox") / period
    try:
        config = load_config(args.config)
        if config.imap is None:
            raise ConfigError(f"Tệp cấu hình {config.path.name} chưa có mục [imap] (máy chủ nhận thư).")
        password = config.imap.password()
    except ConfigError as exc:
        _err(f"Lỗi cấu hình: {exc}")
        return EXIT_USAGE
    if not addresses:
        print(
            "Lưu ý: danh sách đơn vị chưa có cột email nên chưa biết thư nào của đơn vị nào; các tệp vẫn "
            "được lưu (xem README, mục thư điện tử)."
        )
    try:
        with open_store(args.store) as store:
            report = fetch_mail(
                config, store, inbox, period, senders, by_code, password=password, mark_seen=args.mark_seen
            )
    except StoreError as exc:
        _err(str(exc))
        return EXIT_FAILED
    except MailError as exc:
        _err(str(exc))
        return EXIT_FAILED
    if report.uidvalidity_changed:
        print(
            f"Thư mục «{report.mailbox}» đã được máy chủ đánh số lại: đã xem lại toàn bộ thư, các tệp đã lưu "
            "trước đây không bị lưu lần nữa."
        )
    print(
        f"Hộp thư «{report.mailbox}»: {report.looked_at} thư mới"
        + (f" ({report.already_seen} thư đã lấy về trước đây)" if report.already_seen else "")
        + "."
    )
    for m in report.messages:
        who = by_code.get(m.unit_code, {}).get("unit_name") or "không rõ đơn vị"
        when = m.date.astimezone().strftime("%d/%m/%Y %H:%M") if m.date else ""
        head = f"  {when} {m.sender} ({who})"
        if m.status == "too-large":
            print(f"{head}: thư quá lớn, không tải về.")
            continue
        if not m.saved and not m.duplicates:
            print(f"{head}: không có tệp bảng tính.")
        for original, saved in m.saved:
            print(f"{head}: «{original}» → {saved}")
        for original, before in m.duplicates:
            print(f"{head}: «{original}» đã có ({before}), không lưu lại.")
    findings = report.findings
    if findings is not None and not findings.empty:
        print("\nCần xem lại:")
        for r in findings.itertuples(index=False):
            tag = "LỖI     " if r.severity == "error" else "CẢNH BÁO"
            print(f"  {tag} {r.message}")
    print(
        f"\nĐã lưu {len(report.saved)} tệp vào thư mục {inbox}"
        + (f"; {report.duplicates} tệp trùng không lưu lại" if report.duplicates else "")
        + "."
    )
    if report.saved:
        print(f"Bước tiếp theo: tonghop consolidate --period {period} --inbox {inbox}")
    return EXIT_ATTENTION if findings is not None and not findings.empty else EXIT_OK


def run_send(args: argparse.Namespace) -> int:
    from pipeline.history.store import StoreError, open_store
    from pipeline.mail.config import ConfigError, load_config
    from pipeline.mail.fetch import MailError
    from pipeline.mail.send import SendError, prepare_letters, send_letters, write_letters

    period = check_period(args.period)
    definition = load_definition(args.definition)
    units, addresses, _ = _units(args)
    try:
        config = load_config(args.config)
        password = None
        if args.send:
            if config.smtp is None:
                raise ConfigError(f"Tệp cấu hình {config.path.name} chưa có mục [smtp] (máy chủ gửi thư).")
            password = config.smtp.password()
    except ConfigError as exc:
        _err(f"Lỗi cấu hình: {exc}")
        return EXIT_USAGE
    out_dir = args.out / period
    try:
        letters, problems = prepare_letters(
            definition, units, addresses, config, out_dir, args.templates, period, deadline=args.deadline
        )
    except SendError as exc:
        _err(str(exc))
        return EXIT_USAGE
    folder = write_letters(letters, out_dir / "thu-gui")
    for line in problems:
        print(f"  CẢNH BÁO {line}")
    if not args.send:
        print(
            f"Đã soạn {len(letters)} thư trong thư mục {folder} (tệp .eml, mở bằng Outlook hoặc Thunderbird "
            "để xem trước)."
        )
        for letter in letters:
            print(f"  {letter.unit_name}: {letter.subject} → {', '.join(letter.to)}")
        print("Chưa gửi thư nào. Khi đã xem và thấy đúng, chạy lại với --send để gửi.")
        return EXIT_ATTENTION if problems else EXIT_OK
    try:
        with open_store(args.store) as store:
            results = send_letters(letters, config, store, period, password=password)
    except StoreError as exc:
        _err(str(exc))
        return EXIT_FAILED
    except MailError as exc:
        _err(str(exc))
        return EXIT_FAILED
    words = {"sent": "đã gửi", "refused": "bị từ chối", "retry": "sẽ thử lại", "skipped": "đã gửi trước đây"}
    for r in results:
        extra = f" ({r.detail})" if r.detail else ""
        print(f"  {words[r.status]:<17} {r.unit_name} <{r.recipient}>{extra}")
    counts = {s: sum(r.status == s for r in results) for s in words}
    print(
        f"\nĐã gửi {counts['sent']} thư; {counts['skipped']} thư đã gửi trước đây không gửi lại; "
        f"{counts['refused']} bị từ chối; {counts['retry']} sẽ thử lại khi chạy lại lệnh này."
    )
    attention = problems or counts["refused"] or counts["retry"]
    return EXIT_ATTENTION if attention else EXIT_OK
