"""The `tonghop` command: templates, check, consolidate. Parses arguments, calls the core, prints."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.definition import (
    DEFAULT_DEFINITION,
    DEFAULT_UNITS,
    DefinitionError,
    check_period,
    load_definition,
)

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_OUTPUT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a program stopped by Ctrl-C


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--definition", type=Path, default=DEFAULT_DEFINITION, help="định nghĩa báo cáo (YAML)")
    p.add_argument("--units", type=Path, default=DEFAULT_UNITS, help="danh sách đơn vị (CSV)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tonghop", description="Tổng hợp báo cáo của các xã, phường.")
    parser.add_argument("--version", action="version", version=f"tonghop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("templates", help="tạo mẫu báo cáo Excel cho từng đơn vị")
    _common(p)
    p.add_argument("--period", required=True, help="kỳ báo cáo, ví dụ 2020-H1")
    p.add_argument("--out", type=Path, default=Path("input_templates"), help="thư mục ghi mẫu")
    p = sub.add_parser("check", help="kiểm tra tệp báo cáo như Phòng sẽ kiểm tra")
    _common(p)
    p.add_argument("files", nargs="+", type=Path, help="các tệp báo cáo (.xlsx, .xls, .ods)")
    p.add_argument("--period", help="kỳ báo cáo phải có, ví dụ 2020-H1 (mặc định: không kiểm tra)")
    p.add_argument("--json", action="store_true", help="in kết quả dạng JSON")
    p.add_argument("--timeout", type=float, default=60.0, help="số giây tối đa để đọc một tệp")
    p = sub.add_parser("consolidate", help="đọc mọi tệp trong hộp thư, kiểm tra và tổng hợp")
    _common(p)
    p.add_argument("--inbox", type=Path, default=Path("inbox"), help="thư mục chứa tệp các đơn vị gửi")
    p.add_argument("--out", type=Path, default=Path("output"), help="thư mục ghi kết quả")
    p.add_argument("--period", default="2020-H1", help="kỳ báo cáo, ví dụ 2020-H1")
    p.add_argument("--strict", action="store_true", help="chỉ tổng hợp đơn vị không có lỗi")
    p.add_argument("--no-feedback", action="store_true", help="không tạo tệp phản hồi cho từng đơn vị")
    p.add_argument("--timeout", type=float, default=60.0, help="số giây tối đa để đọc một tệp")
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                   help="số tiến trình đọc tệp và ghi kết quả (mặc định: số lõi, tối đa 4)")
    p.add_argument("--quiet", action="store_true", help="không hiện thanh tiến độ")
    return parser


def _progress(quiet: bool):
    """A callback drawing one tqdm bar per stage (only for runs with many files)."""
    if quiet:
        return None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}
    labels = {"read": "Đọc tệp", "feedback": "Tệp phản hồi"}

    def update(stage: str, done: int, total: int) -> None:
        if total < 20:
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(
                total=total,
                desc=labels.get(stage, stage),
                unit="tệp",
                leave=False,
                file=sys.stderr,
                disable=None,  # only on a terminal: no stray bar in logs or CI output
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def cmd_consolidate(args: argparse.Namespace) -> int:
    from pipeline.job import OutputError, RunError, consolidate_inbox
    from pipeline.run import Options
    from pipeline.units import load_units

    definition = load_definition(args.definition)
    period = check_period(args.period)
    if not args.inbox.is_dir():
        print(
            f"Không tìm thấy thư mục hộp thư «{args.inbox}». Đề nghị lưu các tệp báo cáo vào thư mục đó.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    units = load_units(args.units)
    try:
        summary = consolidate_inbox(
            args.inbox,
            args.out,
            period,
            definition,
            units,
            strict=args.strict,
            feedback=not args.no_feedback,
            options=Options(period=period, timeout=args.timeout, jobs=max(1, args.jobs),
                            readers=max(1, args.jobs)),
            on_progress=_progress(args.quiet),
        )
    except OutputError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_OUTPUT
    except RunError as exc:
        print(
            f"Đã xảy ra lỗi ngoài dự kiến nên chưa ghi kết quả; chi tiết được ghi trong {exc}.",
            file=sys.stderr,
        )
        return EXIT_OUTPUT
    print(
        f"Kỳ báo cáo {definition.period_label(period)}: đã nhận {summary.received}/{summary.expected} đơn vị "
        f"({summary.files} tệp)."
    )
    if summary.missing:
        print(f"Chưa nộp ({len(summary.missing)}): {', '.join(summary.missing)}.")
    print(f"Phát hiện {summary.errors} lỗi và {summary.warnings} cảnh báo.")
    if summary.skipped:
        print(f"Bỏ qua {len(summary.skipped)} tệp không phải bảng tính: {', '.join(summary.skipped)}.")
    print(f"Kết quả trong thư mục {summary.out_dir}:")
    if len(summary.district_files) <= 5:
        for p in summary.district_files:
            print(f"  - {p.name} (bảng tổng hợp)")
    else:
        print(f"  - {len(summary.district_files)} bảng tổng hợp, mỗi huyện một tệp")
    print(f"  - feedback/ ({summary.feedback_files} tệp phản hồi cho các đơn vị)")
    print("  - values.csv, findings.csv, manifest.json")
    return EXIT_OK


def _print_findings(findings, out=None) -> None:
    from pipeline.findings import show

    out = out or sys.stdout

    if findings.empty:
        print("Không phát hiện lỗi nào. Cảm ơn đơn vị đã báo cáo đầy đủ.", file=out)
        return
    for file, group in findings.groupby("file", sort=False, dropna=False):
        unit = group["unit_name"].dropna()
        who = f" – {unit.iloc[0]}" if len(unit) and unit.iloc[0] else ""
        print(f"\n{file}{who}", file=out)
        for r in group.itertuples(index=False):
            tag = "LỖI     " if r.severity == "error" else "CẢNH BÁO"
            where = f"{r.sheet}!{r.cell}" if r.cell else (r.sheet or "(cả tệp)")
            extra = f"  [giá trị: {show(r.value)}" + (
                f"; đúng: {show(r.expected)}]" if show(r.expected) else "]"
            )
            print(f"  {tag} {where}: {r.message}" + (extra if show(r.value) else ""), file=out)


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from pipeline.findings import public, sort_findings
    from pipeline.run import Options, check_files
    from pipeline.units import load_units

    definition = load_definition(args.definition)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"Không tìm thấy tệp: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    period = check_period(args.period) if args.period else None
    result = check_files(
        args.files, definition, load_units(args.units), options=Options(period=period, timeout=args.timeout)
    )
    findings = sort_findings(result.findings, definition.frame["order"])
    if args.json:
        json.dump(public(findings), sys.stdout, ensure_ascii=False, indent=1, default=str)
        print()
    else:
        _print_findings(findings)
        n_err = int((findings["severity"] == "error").sum())
        n_warn = int((findings["severity"] == "warning").sum())
        print(f"\nTổng cộng: {len(args.files)} tệp, {n_err} lỗi, {n_warn} cảnh báo.")
    return EXIT_ERRORS if (findings["severity"] == "error").any() else EXIT_OK


def cmd_templates(args: argparse.Namespace) -> int:
    from pipeline.template import write_templates
    from pipeline.units import load_units

    definition = load_definition(args.definition)
    paths = write_templates(definition, load_units(args.units), check_period(args.period), args.out)
    print(f"Đã tạo {len(paths)} mẫu báo cáo kỳ {args.period} trong thư mục {paths[0].parent}.")
    return EXIT_OK


COMMANDS = {"templates": cmd_templates, "check": cmd_check, "consolidate": cmd_consolidate}


def main(argv: list[str] | None = None) -> int:
    """Run one command; Ctrl-C stops it with one line (exit 130), whatever it was doing."""
    import signal

    def interrupt(signum, frame):  # the first Ctrl-C stops the command; more would only cut its cleanup
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    try:
        before = signal.signal(signal.SIGINT, interrupt)
    except ValueError:  # not the main thread (a test): Python's own handling stays
        before = None
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("Đã dừng theo yêu cầu (Ctrl-C). Không có tệp nào bị ghi dở; "
              "kết quả lần chạy trước vẫn giữ nguyên.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if before is not None:
            signal.signal(signal.SIGINT, before)


def _main(argv: list[str] | None) -> int:
    import logging

    # developer detail goes to the run's log file (consolidate), never to an officer's terminal
    logging.getLogger("tonghop").addHandler(logging.NullHandler())
    logging.getLogger("tonghop").propagate = False
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except DefinitionError as exc:
        print(f"Lỗi cấu hình: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
