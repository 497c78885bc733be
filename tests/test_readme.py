"""What the README tells a user to type exists: make targets, tonghop commands and their options."""

import re
import shlex
from pathlib import Path

import pytest

from pipeline.cli.commands import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def _commands(prefix: str) -> list[str]:
    """Every command line in the README's code (spans and blocks) starting with `prefix`, comments cut."""
    code = re.findall(r"`([^`\n]+)`", README) + re.findall(r"```sh\n(.*?)```", README, re.S)
    lines = [line.split("  #")[0].strip() for block in code for line in block.splitlines()]
    return sorted({line for line in lines if re.match(prefix, line)})


@pytest.mark.parametrize("line", _commands(r"make\b"))
def test_make_targets_exist(line):
    target = line.split()[1] if len(line.split()) > 1 and "=" not in line.split()[1] else "help"
    assert re.search(rf"^{re.escape(target)}:", MAKEFILE, re.M), line


TONGHOP = r"(\.venv/bin/)?tonghop(\.cmd)? "


def _runnable(line: str) -> bool:
    """A whole command as typed: arguments given, no placeholders (FILE, N, [...]), not --help."""
    words = line.split()
    return (len(words) > 2 and "--help" not in words and "[" not in line and "…" not in line
            and not any(re.fullmatch(r"[A-Z_]+", w) for w in words))


@pytest.mark.parametrize("line", [c for c in _commands(TONGHOP) if _runnable(c)])
def test_tonghop_commands_parse(line):
    argv = shlex.split(re.sub(TONGHOP, "", line, count=1).replace("\\", "/"))
    args = build_parser().parse_args(argv)
    assert args.command in {"templates", "check", "consolidate", "fetch", "send", "history", "diff"}


def test_readme_shows_every_command_and_the_windows_way():
    shown = {shlex.split(re.sub(TONGHOP, "", c, count=1))[0] for c in _commands(TONGHOP)}
    assert shown >= {"templates", "check", "consolidate"}
    assert "tonghop.cmd" in README and "Hướng dẫn nhanh" in README and "## Exit codes" in README
