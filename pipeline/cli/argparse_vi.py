"""argparse speaking Vietnamese: a parser class whose every word, argparse's own included, is Vietnamese.

argparse looks its messages up at call time through the module globals `argparse._` and
`argparse.ngettext` (gettext's). `VietnameseParser` swaps in a lookup in `MESSAGES` (every message
argparse 3.11-3.13 can print) for the duration of each of its public calls, and restores gettext's
after: nothing changes for other parsers in the same process (pytest's own, for one). Sub-commands made
with `add_subparsers().add_parser(...)` are of the same class, so commands added later get it for free.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import textwrap

# argparse's message ids (3.11-3.13) → Vietnamese. tests/test_cli.py checks that every message of the
# running Python's argparse is here.
MESSAGES: dict[str, str] = {
    "usage: ": "Cách dùng: ",
    "positional arguments": "tham số",
    "options": "tùy chọn",
    "subcommands": "các lệnh",
    "%(heading)s:": "%(heading)s:",
    " (default: %(default)s)": " (mặc định: %(default)s)",
    "show this help message and exit": "xem hướng dẫn này rồi thoát",
    "show program's version number and exit": "xem số phiên bản rồi thoát",
    "%(prog)s: error: %(message)s\n": "%(prog)s: lỗi: %(message)s\n",
    "%(prog)s: warning: %(message)s\n": "%(prog)s: lưu ý: %(message)s\n",
    "argument %(argument_name)s: %(message)s": "tham số %(argument_name)s: %(message)s",
    "the following arguments are required: %s": "còn thiếu: %s",
    "one of the arguments %s is required": "cần một trong các tham số %s",
    "unrecognized arguments: %s": "không hiểu tham số: %s",
    "unexpected option string: %s": "tùy chọn không đúng chỗ: %s",
    "ambiguous option: %(option)s could match %(matches)s":
        "tùy chọn %(option)s chưa rõ, có thể là %(matches)s",
    "not allowed with argument %s": "không dùng được cùng với %s",
    "ignored explicit argument %r": "tùy chọn này không nhận giá trị %r",
    "expected one argument": "cần một giá trị",
    "expected at most one argument": "chỉ nhận nhiều nhất một giá trị",
    "expected at least one argument": "cần ít nhất một giá trị",
    "expected %s argument": "cần %s giá trị",
    "expected %s arguments": "cần %s giá trị",
    "invalid %(type)s value: %(value)r": "giá trị không hợp lệ: %(value)r",
    "invalid choice: %(value)r (choose from %(choices)s)":
        "không có lựa chọn %(value)r (chọn một trong: %(choices)s)",
    "unknown parser %(parser_name)r (choices: %(choices)s)":
        "không có lệnh %(parser_name)r (các lệnh: %(choices)s)",
    "can't open '%(filename)s': %(error)s": "không mở được «%(filename)s»: %(error)s",
    "argument \"-\" with mode %r": "không dùng được «-» với chế độ %r",
    "option '%(option)s' is deprecated": "tùy chọn «%(option)s» sắp bỏ",
    "argument '%(argument_name)s' is deprecated": "tham số «%(argument_name)s» sắp bỏ",
    "command '%(parser_name)s' is deprecated": "lệnh «%(parser_name)s» sắp bỏ",
    # mistakes of whoever builds a parser, not of the user; translated all the same
    "%r is not callable": "%r không gọi được",
    "'required' is an invalid argument for positionals": "tham số vị trí không nhận 'required'",
    ".__call__() not defined": "chưa định nghĩa .__call__()",
    "cannot have multiple subparser arguments": "chỉ được có một nhóm lệnh con",
    "cannot merge actions - two groups are named %r": "không gộp được: hai nhóm cùng tên %r",
    "conflicting option string: %s": "tùy chọn bị trùng: %s",
    "conflicting option strings: %s": "các tùy chọn bị trùng: %s",
    "conflicting subparser: %s": "lệnh bị trùng: %s",
    "conflicting subparser alias: %s": "tên khác của lệnh bị trùng: %s",
    "dest= is required for options like %r": "tùy chọn như %r cần dest=",
    "invalid conflict_resolution value: %r": "giá trị conflict_resolution không hợp lệ: %r",
    "invalid option string %(option)r: must start with a character %(prefix_chars)r":
        "tùy chọn %(option)r không hợp lệ: phải bắt đầu bằng %(prefix_chars)r",
    "mutually exclusive arguments must be optional": "các tham số loại trừ nhau phải là tùy chọn",
}


def translate(message: str) -> str:
    """argparse's message `message` in Vietnamese (itself when it has none)."""
    return MESSAGES.get(message, message)


def translate_plural(singular: str, plural: str, n: int) -> str:
    return translate(singular if n == 1 else plural)


@contextlib.contextmanager
def speaking_vietnamese():
    """While inside, argparse looks its messages up in MESSAGES; gettext's lookup is restored after."""
    saved = argparse._, argparse.ngettext
    argparse._, argparse.ngettext = translate, translate_plural
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved


def _in_vietnamese(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with speaking_vietnamese():
            return method(*args, **kwargs)

    return wrapper


class VietnameseHelpFormatter(argparse.HelpFormatter):
    """Fills the paragraphs of descriptions and epilogs to the terminal's width but keeps indented lines
    as written (examples, the table of exit codes), and adds each option's default to its help:
    " (mặc định: …)", unless the help already says it or there is none to say."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            if line.startswith(" ") or not line.strip():
                lines.append(indent + line)
            else:
                lines.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent))
        return "\n".join(lines)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "mặc định" in text or not action.option_strings
                or default in (None, False, argparse.SUPPRESS)):
            return text
        return text + " (mặc định: %(default)s)"


class VietnameseParser(argparse.ArgumentParser):
    """An ArgumentParser that prints only Vietnamese: headings, help of -h/--help and --version, every
    error. An error prints the usage, one line "<prog>: lỗi: <message>" and where to read more, then
    exits with status 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", VietnameseHelpFormatter)
        with speaking_vietnamese():
            super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        if kwargs.get("action") == "version":  # its default help is English, fixed when argparse loads
            kwargs.setdefault("help", translate("show program's version number and exit"))
        return super().add_argument(*args, **kwargs)

    def error(self, message: str):
        with speaking_vietnamese():
            self.print_usage(sys.stderr)
            self.exit(2, f"{self.prog}: lỗi: {message}\nXem hướng dẫn: {self.prog} --help\n")

    add_subparsers = _in_vietnamese(argparse.ArgumentParser.add_subparsers)
    parse_args = _in_vietnamese(argparse.ArgumentParser.parse_args)
    parse_known_args = _in_vietnamese(argparse.ArgumentParser.parse_known_args)
    parse_intermixed_args = _in_vietnamese(argparse.ArgumentParser.parse_intermixed_args)
    parse_known_intermixed_args = _in_vietnamese(argparse.ArgumentParser.parse_known_intermixed_args)
    format_usage = _in_vietnamese(argparse.ArgumentParser.format_usage)
    format_help = _in_vietnamese(argparse.ArgumentParser.format_help)


def positive_number(limit: float, unit: str):
    """An argparse `type`: a number > 0 and ≤ `limit` (in `unit`), else a Vietnamese error."""

    def parse(text: str) -> float:
        try:
            value = float(text.replace(",", "."))
        except ValueError:
            raise argparse.ArgumentTypeError(f"«{text}» không phải là một số") from None
        if not 0 < value <= limit:
            raise argparse.ArgumentTypeError(f"cần một số lớn hơn 0 và không quá {limit:g} {unit}, "
                                             f"không phải {text}")
        return value

    return parse


def whole_number(low: int, high: int, what: str):
    """An argparse `type`: a whole number from `low` to `high`, else a Vietnamese error naming `what`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"«{text}» không phải là một số nguyên") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} phải từ {low} đến {high}, không phải {text}")
        return value

    return parse
