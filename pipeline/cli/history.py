"""The history commands of `tonghop`: `history` (runs; a unit's submissions; `import` of earlier results)
and `diff` (what changed between two versions of a ward's report). Parses, calls the core, prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.definition import DEFAULT_DEFINITION, DEFAULT_UNITS, load_definition

EXIT_OK, EXIT_ATTENTION, EXIT_USAGE = 0, 1, 2
STATUS_VN = {
    "used": "được tổng hợp",
    "superseded": "bị thay bằng tệp mới hơn",
    "duplicate": "trùng tệp khác",
    "wrong-period": "sai kỳ báo cáo",
    "unidentified": "không rõ đơn vị",
    "unreadable": "không đọc được",
    "not-used": "không được tổng hợp",
}
COMMAND_VN = {"consolidate": "tổng hợp", "import": "nạp số liệu"}


def store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, default=None, metavar="TỆP",
                   help="tệp lịch sử (mặc định: lich-su.sqlite trong thư mục kết quả --out)")


def store_path(args: argparse.Namespace) -> Path:
    """The store a command uses: --store, else lich-su.sqlite in --out."""
    from pipeline.history.runs import default_store

    return args.store if args.store is not None else default_store(args.out)


EXIT_CODES = {
    "history": """\
Mã thoát:
  0   đã in lịch sử (hoặc đã nạp số liệu)
  1   chưa có tệp lịch sử, tệp lịch sử hỏng hoặc đang bận, hoặc tệp nạp có dòng không dùng được
  2   sai tham số, không tìm thấy tệp cần nạp""",
    "diff": """\
Mã thoát:
  0   đã so sánh (có hoặc không có ô thay đổi)
  1   một trong hai tệp không đọc được
  2   sai tham số, không tìm thấy tệp""",
}


def add_history_commands(sub) -> None:
    """The `history` and `diff` subcommands, added to the parser's subcommands."""
    p = sub.add_parser(
        "history",
        help="xem lịch sử các lần tổng hợp, các lần nộp của một đơn vị; nạp số liệu kỳ trước",
        description="Không có tham số: in các lần tổng hợp đã lưu trong tệp lịch sử. Với mã đơn vị: in các "
        "lần nộp của đơn vị đó qua các kỳ. «import TỆP»: nạp số liệu kỳ trước (bảng tổng hợp .xlsx hoặc "
        "values.csv) để so sánh ngay từ kỳ đầu dùng chương trình.",
        epilog="Ví dụ:\n"
        "  tonghop history\n"
        "  tonghop history 07093\n"
        "  tonghop history import output/2019-H2/values.csv --period 2019-H2\n\n" + EXIT_CODES["history"],
    )
    p.add_argument("unit", nargs="?", metavar="MÃ_ĐƠN_VỊ",
                   help="mã đơn vị để xem các lần nộp của đơn vị đó qua các kỳ; hoặc «import»")
    p.add_argument("files", nargs="*", type=Path, metavar="TỆP",
                   help="với import: bảng tổng hợp (.xlsx) hoặc values.csv của kỳ trước")
    p.add_argument("--period", metavar="KỲ",
                   help="với import: kỳ của số liệu khi tệp không ghi, ví dụ 2019-H2")
    p.add_argument("--out", type=Path, default=Path("output"), metavar="THƯ_MỤC",
                   help="thư mục kết quả (nơi có tệp lịch sử)")
    store_options(p)
    p.add_argument("--definition", type=Path, default=DEFAULT_DEFINITION, metavar="TỆP_YAML",
                   help="định nghĩa báo cáo (YAML)")
    p.add_argument("--units", type=Path, default=DEFAULT_UNITS, metavar="TỆP",
                   help="danh sách đơn vị (CSV hoặc bảng tính)")
    p = sub.add_parser(
        "diff",
        help="so sánh hai phiên bản báo cáo của một đơn vị: các ô thay đổi",
        description="In các ô có số liệu khác nhau giữa hai tệp báo cáo của một đơn vị (trang, ô, mục, "
        "trước → nay). Không sửa tệp nào.",
        epilog="Ví dụ:\n"
        "  tonghop diff 07093-lan-1.xlsx 07093-lan-2.xlsx\n\n" + EXIT_CODES["diff"],
    )
    p.add_argument("old", type=Path, metavar="TỆP_CŨ", help="tệp gửi trước")
    p.add_argument("new", type=Path, metavar="TỆP_MỚI", help="tệp gửi sau")
    p.add_argument("--definition", type=Path, default=DEFAULT_DEFINITION, metavar="TỆP_YAML",
                   help="định nghĩa báo cáo (YAML)")
    p.add_argument("--units", type=Path, default=DEFAULT_UNITS, metavar="TỆP",
                   help="danh sách đơn vị (CSV hoặc bảng tính)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="GIÂY",
                   help="số giây tối đa để đọc một tệp")


def _when(text: object) -> str:
    import pandas as pd

    from pipeline.periods import local_times

    t = local_times(pd.Series([text]))[0]
    return "" if pd.isna(t) else t.strftime("%d/%m/%Y %H:%M")


def _table(rows: list[list[str]], out) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)


def _count(x: object) -> str:
    return "" if x is None or x != x else str(int(x))


def cmd_history(args: argparse.Namespace) -> int:
    from pipeline.history.runs import list_runs, unit_history
    from pipeline.history.store import StoreError, open_store

    if args.unit == "import":
        return _import(args)
    if args.files:
        print("Lệnh history chỉ nhận một mã đơn vị (hoặc «import» kèm tệp).", file=sys.stderr)
        return EXIT_USAGE
    path = store_path(args)
    try:
        with open_store(path, readonly=True) as store:
            frame = unit_history(store, args.unit.strip()) if args.unit else list_runs(store)
    except StoreError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ATTENTION
    out = sys.stdout
    if args.unit:
        if frame.empty:
            print(f"Tệp lịch sử «{path}» chưa có lần nộp nào của đơn vị mã {args.unit}.", file=out)
            return EXIT_OK
        name = next((n for n in frame["unit_name"] if n), args.unit)
        print(f"{name} ({args.unit}): {len(frame)} lần nộp được ghi trong lịch sử «{path}».", file=out)
        rows = [["Kỳ", "Lần", "Tệp", "Nhận lúc", "Muộn (ngày)", "Tình trạng", "Lỗi", "Cảnh báo"]]
        for r in frame.itertuples(index=False):
            status = STATUS_VN.get(r.status, r.status)
            if isinstance(r.superseded_by, str) and r.superseded_by:
                status += f" «{r.superseded_by}»"
            rows.append(
                [
                    r.period or r.run_period,
                    r.run_id,
                    r.file,
                    _when(r.received_at),
                    _count(r.late_days),
                    status,
                    _count(r.errors),
                    _count(r.warnings),
                ]
            )
        _table(rows, out)
        return EXIT_OK
    if frame.empty:
        print(f"Tệp lịch sử «{path}» chưa ghi lần tổng hợp nào.", file=out)
        return EXIT_OK
    print(f"Lịch sử «{path}»: {len(frame)} lần tổng hợp hoặc nạp số liệu (mới nhất trước).", file=out)
    rows = [["Lần", "Thời điểm", "Việc", "Kỳ", "Mẫu", "Số tệp", "Đã nhận", "Lỗi", "Cảnh báo"]]
    for r in frame.itertuples(index=False):
        got = _count(r.units_received) + (f"/{_count(r.units_expected)}" if _count(r.units_expected) else "")
        rows.append(
            [
                r.run_id,
                _when(r.started_at),
                COMMAND_VN.get(r.command, r.command),
                r.period,
                f"{r.definition_id} v{r.definition_version}",
                _count(r.files),
                got,
                _count(r.errors),
                _count(r.warnings),
            ]
        )
    _table(rows, out)
    print("Xem các lần nộp của một đơn vị: tonghop history MÃ_ĐƠN_VỊ", file=out)
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from pipeline.definition import check_period
    from pipeline.history.imports import HistoryImportError, import_values, read_past_values
    from pipeline.history.store import StoreError, open_store
    from pipeline.units import load_units

    if not args.files:
        print(
            "Đề nghị ghi tệp cần nạp, ví dụ: tonghop history import output/2019-H2/values.csv",
            file=sys.stderr,
        )
        return EXIT_USAGE
    definition = load_definition(args.definition)
    units = load_units(args.units)
    period = check_period(args.period) if args.period else None
    path = store_path(args)
    try:
        with open_store(path, check=True) as store:
            for file in args.files:
                frame, said = read_past_values(file, definition)
                done = import_values(store, definition, units, frame, period or said, file)
                print(
                    f"Đã nạp «{file.name}» vào lịch sử «{path}»: kỳ {', '.join(done.periods)}, "
                    f"{done.units} đơn vị, {done.values} giá trị (lần {', '.join(map(str, done.run_ids))})."
                )
                if done.skipped_fields:
                    print(
                        f"  Bỏ qua các mục không có trong mẫu báo cáo: {', '.join(done.skipped_fields[:10])}."
                    )
                if done.unknown_units:
                    print(
                        f"  Các mã đơn vị không có trong danh sách (vẫn được lưu, không tính vào số liệu của "
                        f"huyện): {', '.join(done.unknown_units[:10])}."
                    )
    except (HistoryImportError, StoreError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ATTENTION
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    import pandas as pd

    from pipeline.history.changes import diff_versions
    from pipeline.intake.reading import ReadOptions
    from pipeline.units import load_units
    from pipeline.wiring import check_files

    missing = [str(f) for f in (args.old, args.new) if not f.is_file()]
    if missing:
        print(f"Không tìm thấy tệp: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    definition = load_definition(args.definition)
    result = check_files(
        [args.old, args.new], definition, load_units(args.units), options=ReadOptions(timeout=args.timeout)
    )
    subs = result.submissions
    unread = [str(f) for i, f in enumerate((args.old, args.new)) if i not in subs.index]
    if unread:
        from pipeline.findings import show

        print(f"Không đọc được số liệu của: {', '.join(unread)}.", file=sys.stderr)
        for r in result.findings[result.findings["submission"].isna()].itertuples(index=False):
            print(f"  {r.file}: {show(r.message)}", file=sys.stderr)
        return EXIT_USAGE
    names = subs["unit_name"].fillna("").tolist()
    changes = diff_versions(result.values, result.values, pd.DataFrame({"old": [0], "new": [1]}), definition)
    out = sys.stdout
    who = names[1] or names[0] or "đơn vị"
    print(f"So sánh hai tệp báo cáo của {who}:\n  trước: {args.old}\n  sau:   {args.new}", file=out)
    if names[0] and names[1] and names[0] != names[1]:
        print(f"Chú ý: hai tệp của hai đơn vị khác nhau ({names[0]}, {names[1]}).", file=out)
    if changes.empty:
        print("Số liệu của hai tệp giống nhau.", file=out)
        return EXIT_OK
    print(f"{len(changes)} ô có số liệu thay đổi:", file=out)
    for r in changes.itertuples(index=False):
        print(f"  Trang «{r.sheet}», ô {r.cell} ({r.label}): {r.before} → {r.after}", file=out)
    return EXIT_OK


HISTORY_COMMANDS = {"history": cmd_history, "diff": cmd_diff}
