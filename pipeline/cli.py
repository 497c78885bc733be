"""The `tonghop` command: templates, check, consolidate. Parses arguments, calls the core, prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import __version__
from pipeline.definition import DEFAULT_DEFINITION, DEFAULT_UNITS, DefinitionError, check_period, load_definition

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_OUTPUT = 0, 1, 2, 3


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
    return parser


def cmd_templates(args: argparse.Namespace) -> int:
    from pipeline.template import write_templates
    from pipeline.units import load_units

    definition = load_definition(args.definition)
    paths = write_templates(definition, load_units(args.units), check_period(args.period), args.out)
    print(f"Đã tạo {len(paths)} mẫu báo cáo kỳ {args.period} trong thư mục {paths[0].parent}.")
    return EXIT_OK


COMMANDS = {"templates": cmd_templates}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except DefinitionError as exc:
        print(f"Lỗi cấu hình: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
