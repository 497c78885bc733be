"""Set up and run tonghop for someone who has Python and nothing else: what `tonghop.cmd` calls.

`python -m pipeline.launcher [arguments of tonghop]`, from any folder. On first use (and after
pyproject.toml changes) it creates `.venv/` beside the project and installs tonghop into it, printing
one line; pip's output goes to `.venv/install.log`, whose end is shown if the install fails. With
arguments it then runs `tonghop <arguments>` in the project folder and returns its exit status.
Without (a double-click), it asks for the period, reads `inbox/<period>/` once it holds a spreadsheet
(else the shipped samples of that period, saying so), consolidates, opens the output folder and waits
for Enter so that the window stays open.

Standard library only, and no syntax newer than Python 3.6, so that an older Python can still say in
Vietnamese that it is too old.
"""

import contextlib
import datetime
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 11)
SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods")
PERIOD = re.compile(r"^\d{4}(-H[12])?$")
STAMP = ".installed-app"  # make's own stamp (.installed) means the same and more (test tools)


def _bin(venv, name):
    """A program of the virtual environment: Scripts/<name>.exe on Windows, bin/<name> elsewhere."""
    return venv / "Scripts" / (name + ".exe") if os.name == "nt" else venv / "bin" / name


def is_installed(root=ROOT):
    """True when root/.venv holds tonghop installed from the current pyproject.toml."""
    venv = root / ".venv"
    if not _bin(venv, "tonghop").exists():
        return False
    changed = (root / "pyproject.toml").stat().st_mtime
    return any((venv / s).exists() and (venv / s).stat().st_mtime >= changed for s in (STAMP, ".installed"))


def install(root=ROOT, python=sys.executable):
    """Create root/.venv with `python` and install tonghop into it (editable: the report definitions and
    units lists stay in the project folder). Returns True when done; on failure prints the log's end."""
    venv = root / ".venv"
    log = venv / "install.log"
    print(f"Đang cài đặt tonghop lần đầu, khoảng 1 phút… (chi tiết: {log})")
    venv.mkdir(exist_ok=True)
    steps = [] if _bin(venv, "python").exists() else [[python, "-m", "venv", str(venv)]]
    steps.append([str(_bin(venv, "python")), "-m", "pip", "install", "--disable-pip-version-check",
                  "-e", str(root)])
    with open(str(log), "w", encoding="utf-8") as fh:
        for cmd in steps:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            if subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(root)) != 0:
                break
        else:
            (venv / STAMP).touch()
            print("Đã cài đặt xong.")
            return True
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
    print(f"Cài đặt không thành công (cần mạng Internet để tải các gói). Cuối nhật ký {log}:")
    print("\n".join(tail))
    return False


def has_spreadsheet(folder):
    """True when `folder` holds a spreadsheet, in subfolders too."""
    return folder.is_dir() and any(p.suffix.lower() in SPREADSHEETS for p in folder.rglob("*"))


def default_period(root=ROOT, today=None):
    """The newest period whose inbox holds a spreadsheet; else the period of the shipped samples; else
    the current half-year."""
    inbox = root / "inbox"
    found = sorted(p.name for p in inbox.iterdir() if PERIOD.match(p.name) and has_spreadsheet(p)) \
        if inbox.is_dir() else []
    if found:
        return found[-1]
    samples = sorted(p.name for p in (root / "samples").glob("*") if PERIOD.match(p.name))
    if samples:
        return samples[-1]
    today = today or datetime.date.today()
    return f"{today.year}-H{1 if today.month <= 6 else 2}"


def choose_inbox(period, root=ROOT):
    """inbox/<period> once it holds a spreadsheet, else samples/<period> when shipped (saying so), else
    inbox/<period> (tonghop then says what to create). Paths relative to `root`."""
    real = Path("inbox") / period
    if has_spreadsheet(root / real):
        return real
    samples = Path("samples") / period
    if (root / samples).is_dir():
        print(f"Chưa có tệp nào trong {real}: chạy thử với các tệp mẫu trong {samples}.")
        return samples
    return real


def consolidate_args(period, inbox):
    """The tonghop arguments a double-click runs."""
    return ["consolidate", "--period", period, "--inbox", str(inbox), "--out", "output"]


def ask_period(default, ask=None):
    """The period the officer types (Enter: `default`), asked again until it is one; `ask` is input()."""
    ask = ask or input
    prompt = f"Kỳ báo cáo cần tổng hợp (ví dụ 2020-H1, 2020-H2, 2021; bấm Enter để chọn {default}): "
    while True:
        answer = ask(prompt).strip().upper() or default
        if PERIOD.match(answer):
            return answer
        print("Kỳ báo cáo viết như 2020-H1 (6 tháng đầu năm), 2020-H2 (6 tháng cuối năm) hoặc 2020 (cả năm).")


def run_tonghop(args, root=ROOT):
    """Run root/.venv's tonghop with `args` in `root`; its exit status."""
    return subprocess.call([str(_bin(root / ".venv", "tonghop")), *list(args)], cwd=str(root))


def _double_click(root):
    period = ask_period(default_period(root))
    status = run_tonghop(consolidate_args(period, choose_inbox(period, root)), root)
    out = root / "output" / period
    if status in (0, 1) and out.is_dir() and hasattr(os, "startfile"):
        os.startfile(str(out))  # the officer sees the results in Explorer
    return status


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    status = 2
    try:
        if sys.version_info < MIN_PYTHON:
            have, need = "{}.{}".format(*sys.version_info[:2]), "{}.{}".format(*MIN_PYTHON)
            print(f"Máy đang có Python {have}; tonghop cần Python {need} trở lên. Đề nghị cài bản mới từ "
                  "https://www.python.org/downloads/ rồi chạy lại.")
        elif is_installed() or install():
            status = run_tonghop(argv) if argv else _double_click(ROOT)
        else:
            status = 3
    except (KeyboardInterrupt, EOFError):
        print("\nĐã dừng.")
        return 130
    if not argv:
        _pause()
    return status


def _pause():
    """Wait for Enter, so that a double-clicked window stays open until the officer has read it."""
    with contextlib.suppress(KeyboardInterrupt, EOFError):
        input("\nBấm Enter để đóng cửa sổ này…")


if __name__ == "__main__":
    sys.exit(main())
