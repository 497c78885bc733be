"""The `tonghop` command: templates, check, consolidate. Parses arguments, calls the core, prints.

Everything it prints is Vietnamese, argparse's own words included (pipeline.cli.argparse_vi). No traceback
reaches the user: argument errors exit 2 with one line and the usage; anything unexpected exits 3 with
one line naming a log file that holds the detail.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.cli.argparse_vi import VietnameseParser, positive_number, whole_number
from pipeline.cli.history import HISTORY_COMMANDS, add_history_commands, store_path
from pipeline.cli.history import store_options as _store_options
from pipeline.definition import (
    DEFAULT_DEFINITION,
    DEFAULT_UNITS,
    DefinitionError,
    check_period,
    load_definition,
)

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_STORE = Path("output") / "lich-su.sqlite"
SAMPLES_DIR = Path("samples")  # the shipped sample inboxes, samples/<period>/ (made-up figures)
# A template workbook is read in well under a second and the guard stops hostile ones within seconds;
# more than an hour for one file is a typing slip (--timeout 36000), not a need.
TIMEOUT_MAX_S = 3600
JOBS_MAX = 64  # each process holds a few hundred MB at peak; more than this no office PC has

EXIT_CODES = {
    "templates": """\
Mã thoát:
  0  đã tạo các mẫu
  2  sai tham số, không đọc được định nghĩa báo cáo hoặc danh sách đơn vị
  3  không ghi được vào thư mục mẫu, hoặc lỗi ngoài dự kiến""",
    "check": """\
Mã thoát:
  0  không có lỗi (có thể có cảnh báo)
  1  có ít nhất một lỗi cần sửa
  2  sai tham số, không tìm thấy tệp, không đọc được định nghĩa báo cáo hoặc
     danh sách đơn vị
  3  lỗi ngoài dự kiến""",
    "consolidate": """\
Mã thoát:
  0   đã ghi kết quả
  1   đã ghi kết quả nhưng số liệu cần xem lại: không có tệp nào của kỳ này,
      tự kiểm tra số liệu tổng hợp không đạt, hoặc dùng --strict mà có đơn vị
      bị loại vì có lỗi
  2   sai tham số, không có thư mục hộp thư, không đọc được định nghĩa báo cáo
      hoặc danh sách đơn vị
  3   chưa ghi kết quả: không ghi được vào thư mục kết quả, một lần chạy khác
      đang ghi vào đó, hoặc lỗi ngoài dự kiến (chi tiết trong tệp nhật ký)
  130 đã dừng giữa chừng (Ctrl-C); kết quả lần trước vẫn giữ nguyên""",
    "fetch": """\
Mã thoát:
  0   đã lấy xong
  1   đã lấy xong nhưng có điều cần xem (thư lạ, tệp bị từ chối...)
  2   sai tham số hoặc sai cài đặt hộp thư (tonghop.toml, mật khẩu)
  3   không lấy được: không kết nối được máy chủ, đăng nhập bị từ chối,
      không dùng được tệp lịch sử
  130 đã dừng giữa chừng (Ctrl-C); lấy lại sau không lưu trùng""",
    "send": """\
Mã thoát:
  0   đã soạn (và gửi) xong mọi thư
  1   xong nhưng có thư bị từ chối, sẽ thử lại, hoặc đơn vị chưa có địa chỉ
  2   sai tham số, sai cài đặt hoặc chưa có kết quả tổng hợp của kỳ
  3   không gửi được: không kết nối được máy chủ, đăng nhập bị từ chối
  130 đã dừng giữa chừng (Ctrl-C); chạy lại không gửi trùng""",
}


def period_arg(text: str) -> str:
    """An argparse `type`: a period YYYY-H1, YYYY-H2 or YYYY (case and spaces forgiven)."""
    period = text.strip().upper()
    try:
        return check_period(period)
    except DefinitionError:
        raise argparse.ArgumentTypeError(
            f"kỳ báo cáo «{text}» không hợp lệ: viết 2020-H1 (6 tháng đầu năm), 2020-H2 (6 tháng cuối năm) "
            "hoặc 2020 (cả năm)"
        ) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--definition", type=Path, default=DEFAULT_DEFINITION, metavar="TỆP_YAML",
                   help="định nghĩa báo cáo")
    p.add_argument("--units", type=Path, default=DEFAULT_UNITS, metavar="TỆP",
                   help="danh sách đơn vị (.csv hoặc .xlsx; cột unit_code, unit_name, unit_type, "
                        "district_code, district_name, province_code, province_name)")


def _timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=positive_number(TIMEOUT_MAX_S, "giây"), default=60, metavar="GIÂY",
                   help=f"thời gian tối đa để đọc một tệp, từ trên 0 đến {TIMEOUT_MAX_S} giây")


def build_parser() -> argparse.ArgumentParser:
    parser = VietnameseParser(
        prog="tonghop",
        description="Tổng hợp báo cáo của các xã, phường: tạo mẫu, kiểm tra, tổng hợp.",
        epilog="Ví dụ:\n"
        "  tonghop templates --period 2020-H1\n"
        "  tonghop check bao-cao.xlsx\n"
        "  tonghop consolidate --period 2020-H1\n"
        "Xem hướng dẫn của từng lệnh: tonghop LỆNH --help",
    )
    parser.add_argument("--version", action="version", version=f"tonghop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="LỆNH", title="các lệnh")

    p = sub.add_parser(
        "templates",
        help="tạo mẫu báo cáo Excel: một mẫu trống và một mẫu cho từng đơn vị",
        description="Tạo mẫu báo cáo Excel của một kỳ: một mẫu trống và một mẫu riêng cho từng đơn vị "
        "trong danh sách, ghi vào THƯ_MỤC/<kỳ>/.",
        epilog="Ví dụ:\n"
        "  tonghop templates --period 2020-H2\n"
        "  tonghop templates --period 2021 --out mau-bao-cao\n\n" + EXIT_CODES["templates"],
    )
    p.add_argument("--period", type=period_arg, required=True, metavar="KỲ",
                   help="kỳ báo cáo: 2020-H1, 2020-H2 hoặc 2020 (bắt buộc)")
    p.add_argument("--out", type=Path, default=Path("input_templates"), metavar="THƯ_MỤC",
                   help="thư mục ghi mẫu; các mẫu nằm trong THƯ_MỤC/<kỳ>/")
    _common(p)

    p = sub.add_parser(
        "check",
        help="kiểm tra tệp báo cáo như Phòng sẽ kiểm tra",
        description="Kiểm tra các tệp báo cáo như khi tổng hợp và in từng lỗi, từng cảnh báo (tệp, trang, "
        "ô, giá trị, cách sửa). Một thư mục được kiểm tra cả các thư mục con. Không sửa tệp nào.",
        epilog="Ví dụ:\n"
        "  tonghop check 07093-duc-chinh.xlsx\n"
        "  tonghop check inbox/2020-H1 --period 2020-H1\n"
        "  tonghop check --json bao-cao.xlsx\n\n" + EXIT_CODES["check"],
    )
    p.add_argument("files", nargs="+", type=Path, metavar="TỆP",
                   help="tệp báo cáo (.xlsx, .xls, .ods) hoặc thư mục chứa các tệp đó")
    p.add_argument("--period", type=period_arg, metavar="KỲ",
                   help="kỳ báo cáo các tệp phải có, ví dụ 2020-H1 (mặc định: không kiểm tra kỳ)")
    p.add_argument("--json", action="store_true",
                   help="in kết quả dạng JSON (mỗi lỗi một đối tượng) thay cho bản để đọc")
    _timeout(p)
    _common(p)

    p = sub.add_parser(
        "consolidate",
        help="đọc mọi tệp trong hộp thư của kỳ, kiểm tra và tổng hợp",
        description="Đọc mọi tệp bảng tính trong hộp thư của kỳ (cả thư mục con), kiểm tra từng số liệu, "
        "ghi bảng tổng hợp của mỗi huyện, tệp phản hồi cho từng đơn vị, values.csv, findings.csv "
        "vào THƯ_MỤC/<kỳ>/. Kết quả lần trước chỉ được thay khi lần chạy này xong.",
        epilog="Ví dụ:\n"
        "  tonghop consolidate --period 2020-H1\n"
        "  tonghop consolidate --period 2020-H1 --inbox samples/2020-H1   (chạy thử)\n"
        '  tonghop consolidate --period 2020-H2 --inbox "D:\\Bao cao\\2020-H2" --strict\n\n'
        + EXIT_CODES["consolidate"],
    )
    p.add_argument("--period", type=period_arg, required=True, metavar="KỲ",
                   help="kỳ báo cáo: 2020-H1, 2020-H2 hoặc 2020 (bắt buộc); chỉ tệp của kỳ này được tổng hợp")
    p.add_argument("--inbox", type=Path, metavar="THƯ_MỤC",
                   help="thư mục chứa các tệp đơn vị gửi (mặc định: inbox/<kỳ>, ví dụ inbox/2020-H1)")
    p.add_argument("--out", type=Path, default=Path("output"), metavar="THƯ_MỤC",
                   help="thư mục ghi kết quả; kết quả nằm trong THƯ_MỤC/<kỳ>/")
    p.add_argument("--strict", action="store_true",
                   help="đơn vị có lỗi bị loại hẳn khỏi số liệu tổng hợp (không chỉ các ô lỗi), và lệnh "
                        "thoát với mã 1 nếu có đơn vị bị loại")
    p.add_argument("--no-feedback", action="store_true", help="không tạo tệp phản hồi cho từng đơn vị")
    _timeout(p)
    p.add_argument("--jobs", type=whole_number(1, JOBS_MAX, "số tiến trình"),
                   default=min(4, os.cpu_count() or 1), metavar="SỐ",
                   help="số tiến trình đọc tệp và ghi kết quả (mặc định: số lõi của máy, tối đa 4)")
    p.add_argument("--quiet", action="store_true", help="không hiện thanh tiến độ")
    p.add_argument("--deadline", metavar="NGÀY",
                   help="hạn nộp của kỳ, ví dụ 25/06/2020 (mặc định: theo schemas/periods.yaml)")
    p.add_argument("--no-store", action="store_true", help="không đọc, không ghi tệp lịch sử")
    _store_options(p)
    _common(p)
    _mail_parsers(sub)
    add_history_commands(sub)
    return parser


def _mail_parsers(sub) -> None:
    """`fetch` and `send`: the office mailbox (settings in tonghop.toml)."""
    p = sub.add_parser(
        "fetch",
        help="lấy các tệp báo cáo đính kèm từ hộp thư của Phòng vào hộp thư của kỳ",
        description="Đọc các thư mới trong hộp thư của Phòng (cài đặt trong tonghop.toml) và lưu mọi "
        "tệp bảng tính đính kèm (cả trong tệp .zip) vào hộp thư của kỳ. Không xóa, không chuyển, không "
        "đánh dấu thư; lấy lại nhiều lần không lưu trùng.",
        epilog="Ví dụ:\n"
        "  tonghop fetch --period 2020-H1\n"
        "  tonghop fetch --period 2020-H1 --config D:\\tonghop\\tonghop.toml --mark-seen\n\n"
        + EXIT_CODES["fetch"],
    )
    p.add_argument("--period", type=period_arg, required=True, metavar="KỲ",
                   help="kỳ báo cáo đang nhận: 2020-H1, 2020-H2 hoặc 2020 (bắt buộc)")
    p.add_argument("--inbox", type=Path, metavar="THƯ_MỤC",
                   help="thư mục lưu tệp (mặc định: inbox/<kỳ>)")
    p.add_argument("--config", type=Path, default=Path("tonghop.toml"), metavar="TỆP",
                   help="tệp cài đặt hộp thư (xem tonghop.example.toml)")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, metavar="TỆP",
                   help="tệp lịch sử (SQLite) ghi nhớ các thư đã lấy")
    p.add_argument("--mark-seen", action="store_true", help="đánh dấu «đã đọc» các thư đã lấy về")
    _common(p)
    p = sub.add_parser(
        "send",
        help="soạn (và gửi) thư phản hồi cho từng đơn vị sau khi tổng hợp",
        description="Soạn cho mỗi đơn vị đã nộp một thư báo kết quả kiểm tra (kèm tệp phản hồi), cho mỗi "
        "đơn vị chưa nộp một thư nhắc (kèm mẫu báo cáo). Mặc định chỉ ghi các thư thành tệp .eml vào "
        "THƯ_MỤC/<kỳ>/thu-gui/ để xem trước; với --send thì gửi qua máy chủ SMTP, không gửi trùng thư nào.",
        epilog="Ví dụ:\n"
        "  tonghop send --period 2020-H1              (chỉ soạn thư để xem trước)\n"
        "  tonghop send --period 2020-H1 --send --deadline 2020-07-25\n\n" + EXIT_CODES["send"],
    )
    p.add_argument("--period", type=period_arg, required=True, metavar="KỲ",
                   help="kỳ báo cáo đã tổng hợp: 2020-H1, 2020-H2 hoặc 2020 (bắt buộc)")
    p.add_argument("--out", type=Path, default=Path("output"), metavar="THƯ_MỤC",
                   help="thư mục kết quả của lần tổng hợp (đọc THƯ_MỤC/<kỳ>/)")
    p.add_argument("--templates", type=Path, default=Path("input_templates"), metavar="THƯ_MỤC",
                   help="thư mục mẫu báo cáo gửi kèm thư nhắc")
    p.add_argument("--config", type=Path, default=Path("tonghop.toml"), metavar="TỆP",
                   help="tệp cài đặt hộp thư (xem tonghop.example.toml)")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, metavar="TỆP",
                   help="tệp lịch sử (SQLite) ghi nhớ các thư đã gửi")
    p.add_argument("--deadline", metavar="NGÀY",
                   help="hạn nộp hoặc nộp lại ghi trong thư, ví dụ 2020-07-20 (mặc định: theo tonghop.toml)")
    p.add_argument("--send", action="store_true",
                   help="gửi thư qua máy chủ SMTP (mặc định: chỉ ghi các tệp .eml để xem trước)")
    _common(p)


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


class UsageError(Exception):
    """A dead end the user can fix (a folder missing, a file where a folder belongs): exit 2."""


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _units(path: Path):
    """The units list at `path`; what was repaired in it (codes given back their zeros) said on stderr."""
    from pipeline.units import load_units

    units = load_units(path)
    for note in units.attrs.get("notes", []):
        _say(note)
    return units


def _sample_notice(files: list[str], period: str) -> list[str]:
    """The loud lines printed when made-up sample workbooks were read."""
    return [
        "",
        "!" * 78,
        f"!! CHÚ Ý: {len(files)} tệp là TỆP MẪU (số liệu giả để chạy thử), không phải báo cáo thật.",
        "!! Kết quả này chỉ để xem thử: không gửi lên cấp trên, không gửi phản hồi cho đơn vị.",
        f"!! Để tổng hợp báo cáo thật: lưu các tệp đơn vị gửi vào inbox/{period} rồi chạy lại.",
        "!" * 78,
    ]


def _inbox_of(args: argparse.Namespace) -> Path:
    """The inbox to read (`--inbox`, else inbox/<period>); raise UsageError saying what to create."""
    inbox = args.inbox if args.inbox is not None else Path("inbox") / args.period
    if inbox.is_dir():
        return inbox
    if inbox.exists():
        raise UsageError(f"«{inbox}» là một tệp, không phải thư mục. Hộp thư phải là một thư mục chứa các "
                         "tệp báo cáo.")
    lines = [f"Chưa có thư mục hộp thư «{inbox}».",
             f"Đề nghị tạo thư mục đó và lưu vào đó các tệp báo cáo kỳ {args.period} mà các đơn vị gửi "
             "(có thể để trong thư mục con), rồi chạy lại; hoặc chỉ thư mục khác bằng --inbox THƯ_MỤC."]
    if (SAMPLES_DIR / args.period).is_dir():
        lines.append(f"Chạy thử với tệp mẫu: tonghop consolidate --period {args.period} "
                     f"--inbox {SAMPLES_DIR / args.period}")
    raise UsageError("\n".join(lines))


def _consolidate_status(summary, strict: bool) -> int:
    """0, or 1 when the outputs are written but the figures need attention (see EXIT_CODES)."""
    if summary.received == 0 or summary.attention or getattr(summary, "store_problem", None):
        return EXIT_ERRORS
    if strict and summary.errors:
        return EXIT_ERRORS
    return EXIT_OK


def cmd_consolidate(args: argparse.Namespace) -> int:
    from pipeline.intake.reading import ReadOptions
    from pipeline.outbox import OutputError, RunError
    from pipeline.periods import load_deadlines, parse_deadline
    from pipeline.wiring import WriteOptions, consolidate_inbox

    definition = load_definition(args.definition)
    period = args.period
    inbox = _inbox_of(args)
    units = _units(args.units)
    deadline = parse_deadline(args.deadline) if args.deadline else load_deadlines().for_period(period)
    try:
        summary = consolidate_inbox(
            inbox,
            args.out,
            period,
            definition,
            units,
            strict=args.strict,
            read=ReadOptions(timeout=args.timeout, readers=args.jobs),
            write=WriteOptions(jobs=args.jobs, feedback=not args.no_feedback),
            on_progress=_progress(args.quiet),
            store=None if args.no_store else store_path(args),
            deadline=deadline,
        )
    except OutputError as exc:
        _say(str(exc))
        return EXIT_OUTPUT
    except RunError as exc:
        _say(f"Đã xảy ra lỗi ngoài dự kiến nên chưa ghi kết quả; chi tiết được ghi trong {exc}.")
        return EXIT_OUTPUT
    print(f"Hộp thư: {inbox}")
    print(
        f"Kỳ báo cáo {definition.period_label(period)}: đã nhận {summary.received}/{summary.expected} đơn vị "
        f"({summary.files} tệp)."
    )
    if summary.files == 0:
        print("Hộp thư chưa có tệp bảng tính nào (.xlsx, .xls, .ods): mọi đơn vị được ghi «Chưa nộp».")
    if summary.no_file_of_period:
        others = "; ".join(f"{n} tệp của kỳ {p or '(không ghi kỳ)'}"
                           for p, n in sorted(summary.periods.items()))
        print(f"Chú ý: 0 tệp của kỳ {period}; {others}: có phải chọn nhầm kỳ báo cáo (--period)?")
    if summary.missing:
        print(f"Chưa nộp ({len(summary.missing)}): {', '.join(summary.missing)}.")
    if summary.wrong_period:
        wrong = summary.wrong_period
        print(f"Chỉ gửi báo cáo của kỳ khác ({len(wrong)}): {', '.join(wrong)}.")
    if summary.on_time is not None and summary.received:
        print(f"Nộp đúng hạn ({deadline:%d/%m/%Y}): {summary.on_time}/{summary.received} đơn vị đã nộp.")
    print(f"Phát hiện {summary.errors} lỗi và {summary.warnings} cảnh báo.")
    if summary.left_out:
        print(f"{summary.left_out} số liệu có lỗi (hoặc được đối chiếu với ô có lỗi) không được tổng hợp; "
              "xem cột «Được tổng hợp» trong values.csv và ghi chú ở các ô tô màu của trang «Tổng hợp».")
    if summary.self_test:
        print("Chú ý: số liệu tổng hợp không qua được bước tự kiểm tra; đề nghị chưa dùng và báo cho "
              "người phụ trách kỹ thuật (chi tiết trong tonghop.log).")
    if summary.skipped:
        print(f"Bỏ qua {len(summary.skipped)} tệp không phải bảng tính: {', '.join(summary.skipped)}.")
    print(f"Kết quả trong thư mục {summary.out_dir}:")
    if len(summary.district_files) <= 5:
        for p in summary.district_files:
            print(f"  - {p.name} (bảng tổng hợp)")
    else:
        print(f"  - {len(summary.district_files)} bảng tổng hợp, mỗi huyện một tệp")
    if summary.province_files:
        print(f"  - {len(summary.province_files)} bảng so sánh các huyện trong tỉnh (tinh-*.xlsx)")
    print(f"  - feedback/ ({summary.feedback_files} tệp phản hồi cho các đơn vị)")
    print("  - values.csv, findings.csv, bang-so-lieu.csv, manifest.json")
    if summary.samples:
        print("\n".join(_sample_notice(summary.samples, period)))
    if summary.run_id is not None:
        print(f"Đã lưu vào lịch sử: lần tổng hợp số {summary.run_id} ({store_path(args)}).")
    if summary.store_problem:
        print(f"Chú ý: {summary.store_problem} Kết quả vẫn được ghi đầy đủ, nhưng lần tổng hợp này chưa được "
              "lưu vào lịch sử.", file=sys.stderr)
    status = _consolidate_status(summary, args.strict)
    if status == EXIT_ERRORS and not summary.attention:
        print("Số liệu cần xem lại (mã thoát 1): "
              + ("không có đơn vị nào nộp báo cáo của kỳ này." if summary.received == 0
                 else "có đơn vị bị loại khỏi số liệu tổng hợp vì có lỗi (--strict)."))
    return status


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


def _files_to_check(given: list[Path]) -> list[Path]:
    """The files named, with every spreadsheet under each folder named (recursively, sorted);
    raise UsageError naming what does not exist or holds no spreadsheet."""
    from pipeline.intake.inbox import discover

    files, missing, empty = [], [], []
    for path in given:
        if path.is_dir():
            books, _ = discover(path)
            files.extend(path / name for name in books)
            if not books:
                empty.append(str(path))
        elif path.is_file():
            files.append(path)
        else:
            missing.append(str(path))
    if missing:
        raise UsageError(f"Không tìm thấy tệp hay thư mục: {', '.join(missing)}")
    if empty:
        raise UsageError(f"Thư mục không có tệp bảng tính nào (.xlsx, .xls, .ods): {', '.join(empty)}")
    return files


def cmd_check(args: argparse.Namespace) -> int:
    import json

    from pipeline.findings import public, sort_findings
    from pipeline.intake.reading import ReadOptions
    from pipeline.wiring import check_files

    definition = load_definition(args.definition)
    files = _files_to_check(args.files)
    result = check_files(
        files, definition, _units(args.units), period=args.period, options=ReadOptions(timeout=args.timeout)
    )
    findings = sort_findings(result.findings, definition.frame["order"])
    samples = result.submissions.loc[result.submissions["sample"], "file"].tolist()
    if args.json:
        json.dump(public(findings), sys.stdout, ensure_ascii=False, indent=1, default=str)
        print()
    else:
        _print_findings(findings)
        n_err = int((findings["severity"] == "error").sum())
        n_warn = int((findings["severity"] == "warning").sum())
        print(f"\nTổng cộng: {len(files)} tệp, {n_err} lỗi, {n_warn} cảnh báo.")
        if samples:
            print(f"Lưu ý: {len(samples)} tệp là tệp mẫu (số liệu giả để chạy thử), không phải báo cáo thật.")
    return EXIT_ERRORS if (findings["severity"] == "error").any() else EXIT_OK


def cmd_templates(args: argparse.Namespace) -> int:
    from pipeline.writers.template import write_templates

    definition = load_definition(args.definition)
    units = _units(args.units)
    folder = args.out / args.period
    for where in (args.out, folder):
        if where.exists() and not where.is_dir():
            raise UsageError(f"«{where}» là một tệp, không phải thư mục: không ghi mẫu vào đó được. "
                             "Đề nghị chọn thư mục khác bằng --out THƯ_MỤC.")
    try:
        paths = write_templates(definition, units, args.period, args.out)
    except OSError as exc:
        _say(f"Không ghi được mẫu vào thư mục «{folder}»: {_os_reason(exc)}.")
        return EXIT_OUTPUT
    print(f"Đã tạo {len(paths)} mẫu báo cáo kỳ {args.period} trong thư mục {paths[0].parent}:")
    print(f"  - {paths[0].name} (mẫu trống, đơn vị tự ghi tên)")
    print(f"  - {len(paths) - 1} mẫu riêng cho từng đơn vị (tên tệp bắt đầu bằng mã đơn vị)")
    return EXIT_OK


def _os_reason(exc: OSError) -> str:
    """Why an OS call failed, in Vietnamese where the reason is a common one."""
    import errno

    reasons = {errno.EACCES: "không có quyền ghi", errno.EPERM: "không có quyền ghi",
               errno.ENOSPC: "ổ đĩa đã đầy", errno.EROFS: "ổ đĩa chỉ cho đọc",
               errno.ENOENT: "không có thư mục đó", errno.ENOTDIR: "một phần của đường dẫn là tệp",
               errno.EEXIST: "đã có tệp trùng tên"}
    return reasons.get(exc.errno or 0, "lỗi hệ thống")




def cmd_fetch(args: argparse.Namespace) -> int:
    from pipeline.cli.mail import run_fetch

    return run_fetch(args)


def cmd_send(args: argparse.Namespace) -> int:
    from pipeline.cli.mail import run_send

    return run_send(args)


COMMANDS = {"templates": cmd_templates, "check": cmd_check, "consolidate": cmd_consolidate,
            "fetch": cmd_fetch, "send": cmd_send, **HISTORY_COMMANDS}


def _crash_log(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected failure to a log file in the temp folder; its path, or None."""
    import datetime as dt
    import tempfile
    import traceback

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(tempfile.gettempdir()) / f"tonghop-loi-{stamp}-{os.getpid()}.log"
    try:
        path.write_text(f"tonghop {__version__}\n{sys.argv}\n"
                        + "".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return None
    return path


def _forgiving_streams() -> None:
    """Printing never fails for want of a character: a Windows console or a redirected output in a
    legacy code page may not have Vietnamese letters."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


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

    _forgiving_streams()
    # developer detail goes to the run's log file (consolidate), never to an officer's terminal
    logging.getLogger("tonghop").addHandler(logging.NullHandler())
    logging.getLogger("tonghop").propagate = False
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except DefinitionError as exc:
        _say(f"Lỗi cấu hình: {exc}")
        return EXIT_USAGE
    except Exception as exc:
        log = _crash_log(exc)
        _say("Đã xảy ra lỗi ngoài dự kiến nên lệnh dừng lại."
             + (f" Chi tiết cho người hỗ trợ kỹ thuật được ghi trong tệp {log}." if log else ""))
        return EXIT_OUTPUT


if __name__ == "__main__":
    sys.exit(main())
