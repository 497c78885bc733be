"""The `tonghop` command as a user runs it: exit codes, Vietnamese output (argparse's words included),
--json, dead ends that end in a message instead of a traceback."""

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from sample_inbox import DUC_CHINH, plausible

from pipeline.cli import commands as cli
from pipeline.cli.argparse_vi import MESSAGES, VietnameseParser
from pipeline.cli.commands import build_parser, main
from pipeline.definition import load_definition
from pipeline.findings import FINDING_COLUMNS
from pipeline.units import load_units
from pipeline.writers.template import render_workbook

DEF = load_definition()
UNITS = load_units().set_index("unit_code")
ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "2020-H1"


def unit(code):
    return UNITS.loc[code].to_dict() | {"unit_code": code}


@pytest.fixture
def duc_chinh(tmp_path):
    """The seed report filled in as phường Đức Chính typed it (total typed over the formula)."""
    path = tmp_path / "07093-duc-chinh.xlsx"
    render_workbook(
        DEF,
        path,
        period="2020-H1",
        unit=unit("07093"),
        values={k: v for k, v in DUC_CHINH.items() if k != "total.participants"},
    )
    wb = openpyxl.load_workbook(path)
    wb["Kết quả hoạt động"]["D16"] = "8.28"
    wb.save(path)
    return path


@pytest.fixture
def clean(tmp_path):
    path = tmp_path / "07096-trang-an.xlsx"
    render_workbook(DEF, path, period="2020-H1", unit=unit("07096"), values=plausible("07096"))
    return path


# ---------------------------------------------------------------------------------------------------
# Vietnamese all the way: argparse's own words never reach the user


def _argparse_messages() -> set[str]:
    """Every message id of the running Python's argparse: the strings it passes to _() and ngettext()."""
    tree = ast.parse(Path(argparse.__file__).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        name = getattr(getattr(node, "func", None), "id", None)
        if isinstance(node, ast.Call) and name in ("_", "ngettext"):
            for a in node.args[: 2 if name == "ngettext" else 1]:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    found.add(a.value)
    return found | {"show program's version number and exit", "subcommands"}  # default arguments


# Every English word argparse can print (three letters or more), from its own message ids
ARGPARSE_WORDS = {
    w.lower()
    for m in _argparse_messages()
    for w in re.findall(r"[A-Za-z']{3,}", re.sub(r"%\(\w+\)[sr]", " ", m))
} - {"prog"}
PATHS_AND_OPTIONS = re.compile(r"\S*[/\\]\S*|(?<!\w)--?[\w-]+")


def english_words(text: str) -> set[str]:
    """argparse's English words in `text`, leaving out option names (--help) and paths."""
    words = re.findall(r"[\w']+", PATHS_AND_OPTIONS.sub(" ", text))
    return {w for w in words if w.lower() in ARGPARSE_WORDS}


def test_every_argparse_message_has_a_vietnamese_translation():
    missing = sorted(_argparse_messages() - set(MESSAGES))
    assert not missing, f"add to pipeline/argparse_vi.MESSAGES: {missing}"
    assert {"usage", "options", "required", "invalid", "choice", "error"} <= ARGPARSE_WORDS


def _parsers(parser):
    """The parser and every sub-command's parser, by command name."""
    yield "", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


@pytest.mark.parametrize("command", [name for name, _ in _parsers(build_parser())])
def test_help_of_every_command_is_vietnamese_with_defaults_example_and_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"] if command else ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("Cách dùng: tonghop"), out
    assert not english_words(out), english_words(out)
    assert "Ví dụ:" in out
    if command:
        assert "Mã thoát:" in out and "\n  0 " in out and "\n  2 " in out
        assert "xem hướng dẫn này rồi thoát" in out
        assert "(mặc định:" in out


def test_every_option_taking_a_value_has_a_vietnamese_placeholder():
    """Without a metavar argparse shows the option's English name in capitals (--period PERIOD)."""
    for name, parser in _parsers(build_parser()):
        for action in parser._actions:
            if action.nargs != 0 and not isinstance(action, argparse._HelpAction):
                assert action.metavar, (name, action.dest)
                assert not english_words(str(action.metavar)), (name, action.metavar)


CONSOLIDATE = ["consolidate", "--period", "2020-H1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "còn thiếu: LỆNH"),
        (["tonghp"], "không có lựa chọn 'tonghp' (chọn một trong: 'templates', 'check', 'consolidate'"),
        (["consolidate"], "còn thiếu: --period"),
        (["templates"], "còn thiếu: --period"),
        (["check"], "còn thiếu: TỆP"),
        (["consolidate", "--period"], "tham số --period: cần một giá trị"),
        (["consolidate", "--period", "2020-H3"], "kỳ báo cáo «2020-H3» không hợp lệ: viết 2020-H1"),
        (["templates", "--period", "6 tháng đầu 2020"], "kỳ báo cáo «6 tháng đầu 2020» không hợp lệ"),
        (["check", "a.xlsx", "--period", "H1"], "kỳ báo cáo «H1» không hợp lệ"),
        ([*CONSOLIDATE, "--timeout", "-1"], "tham số --timeout: cần một số lớn hơn 0 và không quá 3600 giây"),
        ([*CONSOLIDATE, "--timeout", "0"], "cần một số lớn hơn 0"),
        ([*CONSOLIDATE, "--timeout", "1e9"], "không quá 3600 giây, không phải 1e9"),
        ([*CONSOLIDATE, "--timeout", "nan"], "cần một số lớn hơn 0"),
        ([*CONSOLIDATE, "--timeout", "mười"], "«mười» không phải là một số"),
        (["check", "a.xlsx", "--timeout", "-5"], "cần một số lớn hơn 0"),
        ([*CONSOLIDATE, "--jobs", "0"], "số tiến trình phải từ 1 đến 64, không phải 0"),
        ([*CONSOLIDATE, "--jobs", "hai"], "«hai» không phải là một số nguyên"),
        ([*CONSOLIDATE, "--no-feedback=1"], "tùy chọn này không nhận giá trị '1'"),
        ([*CONSOLIDATE, "--bogus"], "không hiểu tham số: --bogus"),
        (["templates", "--period", "2020-H1", "thua"], "không hiểu tham số: thua"),
    ],
)
def test_argument_errors_exit_2_in_vietnamese_with_the_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("Cách dùng: tonghop"), err
    assert message in err, err
    assert "lỗi: " in err and "Xem hướng dẫn: tonghop" in err
    assert not english_words(err), english_words(err)


def _toy_parser():
    p = VietnameseParser(prog="thu")
    p.add_argument("--alpha", metavar="A")
    p.add_argument("--alpine", metavar="B")
    p.add_argument("--pair", nargs=2, metavar=("X", "Y"))
    p.add_argument("--some", nargs="+", metavar="Z")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--mot", action="store_true")
    group.add_argument("--hai", action="store_true")
    return p


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mot", "--al", "x"], "tùy chọn --al chưa rõ, có thể là --alpha, --alpine"),
        (["--mot", "--hai"], "tham số --hai: không dùng được cùng với --mot"),
        ([], "cần một trong các tham số --mot --hai"),
        (["--mot", "--pair", "1"], "tham số --pair: cần 2 giá trị"),
        (["--mot", "--some"], "tham số --some: cần ít nhất một giá trị"),
    ],
)
def test_a_parser_of_the_class_speaks_vietnamese_whatever_the_error(argv, message, capsys):
    """Commands added later (fetch, send, history, diff) are parsers of the same class."""
    with pytest.raises(SystemExit) as exc:
        _toy_parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not english_words(err), english_words(err)


def test_other_parsers_in_the_process_keep_english(capsys):
    _toy_parser().format_help()
    plain = argparse.ArgumentParser(prog="x")
    assert "usage:" in plain.format_help() and "show this help message" in plain.format_help()


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert re.fullmatch(r"tonghop \d+\.\d+\.\d+\n", capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------------
# check


def test_check_clean_file_exits_0(clean, capsys):
    assert main(["check", str(clean), "--period", "2020-H1"]) == 0
    assert "0 lỗi" in capsys.readouterr().out


def test_check_duc_chinh_reports_828(duc_chinh, capsys):
    assert main(["check", str(duc_chinh)]) == 1
    out = capsys.readouterr().out
    assert "Kết quả hoạt động!D16" in out and "828" in out and "8.28" in out


def test_check_json(duc_chinh, capsys):
    assert main(["check", "--json", str(duc_chinh)]) == 1
    items = json.loads(capsys.readouterr().out)
    assert all(list(i) == FINDING_COLUMNS for i in items)
    total = [i for i in items if i["field"] == "total.participants"]
    assert total == [
        {
            **total[0],
            "cell": "D16",
            "rule": "total-mismatch",
            "severity": "error",
            "expected": 828.0,
            "value": "8.28",
            "unit_code": "07093",
            "unit_name": "Phường Đức Chính",
            "sheet": "Kết quả hoạt động",
        }
    ]
    assert not [i for i in items if i["field"] == "total.classes"]
    assert {i["cell"] for i in items if i["rule"] == "female-blank"} == {"E9", "E12", "E14", "E15"}
    assert all(i["severity"] == "warning" for i in items if i["rule"] == "female-blank")
    assert not [
        i
        for i in items
        if i["field"] in ("households", "learners", "conference_attendees") and i["severity"] == "error"
    ]


def test_check_wrong_period_and_unknown_unit(tmp_path, capsys):
    path = tmp_path / "x.xlsx"
    render_workbook(
        DEF, path, period="2020-H2", unit={**unit("07096"), "unit_code": "99999"}, values=plausible("07096")
    )
    assert main(["check", "--json", "--period", "2020-H1", str(path)]) == 1
    rules = {i["rule"] for i in json.loads(capsys.readouterr().out)}
    assert {"period-mismatch", "unit-unknown"} <= rules


def test_blank_template_matches_typed_unit_name(tmp_path, capsys):
    path = tmp_path / "blank.xlsx"
    render_workbook(DEF, path, period="2020-H1", values={**plausible("07087"), "unit_name": "P. Tân  Viet"})
    assert main(["check", "--json", str(path)]) == 0
    assert all(i["unit_code"] == "07087" for i in json.loads(capsys.readouterr().out))


def test_non_template_workbook_gets_one_finding(tmp_path, capsys):
    path = tmp_path / "khac.xlsx"
    wb = openpyxl.Workbook()
    wb.active["A1"] = "Bảng lương tháng 6"
    wb.save(path)
    assert main(["check", "--json", str(path)]) == 1
    items = json.loads(capsys.readouterr().out)
    assert [(i["rule"], i["file"]) for i in items] == [("not-template", str(path))]
    assert "không phải là mẫu báo cáo" in items[0]["message"]


def test_check_a_folder_checks_every_spreadsheet_under_it(tmp_path, duc_chinh, clean, capsys):
    folder = tmp_path / "Báo cáo đã nhận" / "tháng 6"
    folder.mkdir(parents=True)
    duc_chinh.rename(folder / duc_chinh.name)
    (tmp_path / "Báo cáo đã nhận" / "ghi chú.txt").write_text("không phải bảng tính", encoding="utf-8")
    assert main(["check", "--json", str(tmp_path / "Báo cáo đã nhận"), str(clean)]) == 1
    files = {i["file"] for i in json.loads(capsys.readouterr().out)}
    assert str(folder / duc_chinh.name) in files
    assert not [f for f in files if f.endswith(".txt")]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "khong-co.xlsx", "Không tìm thấy tệp hay thư mục: "),
        (lambda d: (d / "trong").mkdir() or d / "trong", "Thư mục không có tệp bảng tính nào"),
    ],
)
def test_check_dead_ends_exit_2(tmp_path, capsys, make, message):
    assert main(["check", str(make(tmp_path))]) == 2
    assert message in capsys.readouterr().err


def test_check_says_when_it_reads_sample_files(capsys):
    assert main(["check", str(SAMPLES / "07096-trang-an.xlsx")]) in (0, 1)
    assert "1 tệp là tệp mẫu (số liệu giả để chạy thử)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------
# templates


def test_templates_writes_the_blank_and_one_per_unit(tmp_path, capsys):
    out = tmp_path / "Mẫu báo cáo"
    assert main(["templates", "--period", "2020-h2", "--out", str(out)]) == 0
    names = {p.name for p in (out / "2020-H2").iterdir()}
    assert "mau-bao-cao-2020-H2.xlsx" in names and "07093-duc-chinh.xlsx" in names and len(names) == 22
    assert "Đã tạo 22 mẫu báo cáo kỳ 2020-H2" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["out", "out/2020-H1"])
def test_templates_out_pointing_at_a_file_exits_2(tmp_path, capsys, where):
    (tmp_path / "out").mkdir() if "/" in where else None
    (tmp_path / where).write_text("x")
    assert main(["templates", "--period", "2020-H1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "là một tệp, không phải thư mục" in err and "Traceback" not in err


def test_templates_unwritable_folder_exits_3(tmp_path, capsys, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pipeline.writers.template.write_templates", refused)
    assert main(["templates", "--period", "2020-H1", "--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "Không ghi được mẫu vào thư mục" in err and "không có quyền ghi" in err
    assert "Permission" not in err


# ---------------------------------------------------------------------------------------------------
# units lists and configuration: exit 2, one Vietnamese message, for every command


@pytest.mark.parametrize(
    "argv",
    [["templates", "--period", "2020-H1"], ["check", "{file}"], ["consolidate", "--period", "2020-H1",
                                                                   "--inbox", "{dir}"]],
)
def test_a_units_list_with_a_header_only_exits_2(tmp_path, clean, capsys, argv):
    units = tmp_path / "don-vi.csv"
    units.write_text("unit_code;unit_name;unit_type;district_code;district_name;province_code;province_name\n",
                     encoding="utf-8-sig")
    argv = [a.format(file=clean, dir=clean.parent) for a in argv]
    assert main([*argv, "--units", str(units), "--out" if argv[0] != "check" else "--json",
                 *([str(tmp_path / "out")] if argv[0] != "check" else [])]) == 2
    err = capsys.readouterr().err
    assert "chỉ có dòng tiêu đề, chưa có đơn vị nào" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_missing_definition_exits_2(tmp_path, capsys):
    assert main(["templates", "--period", "2020-H1", "--definition", str(tmp_path / "x.yaml")]) == 2
    assert "không đọc được định nghĩa báo cáo" in capsys.readouterr().err


def test_nothing_unexpected_reaches_the_user_as_a_traceback(tmp_path, capsys, monkeypatch):
    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "templates", bug)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main(["templates", "--period", "2020-H1"]) == 3
    err = capsys.readouterr().err
    assert "Đã xảy ra lỗi ngoài dự kiến" in err and "a bug" not in err
    log = next(tmp_path.glob("tonghop-loi-*.log")).read_text(encoding="utf-8")
    assert "RuntimeError: a bug" in log


# ---------------------------------------------------------------------------------------------------
# consolidate: the inbox of the period, dead ends


def test_consolidate_without_its_inbox_says_what_to_create(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples" / "2020-H1").mkdir(parents=True)
    assert main(["consolidate", "--period", "2020-H1"]) == 2
    err = capsys.readouterr().err
    assert f"Chưa có thư mục hộp thư «{Path('inbox') / '2020-H1'}»" in err
    assert "Đề nghị tạo thư mục đó và lưu vào đó các tệp báo cáo kỳ 2020-H1" in err
    assert f"--inbox {Path('samples') / '2020-H1'}" in err
    assert not (tmp_path / "output").exists()


def test_consolidate_inbox_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "hop-thu.xlsx").write_text("x")
    assert main([*CONSOLIDATE, "--inbox", str(tmp_path / "hop-thu.xlsx")]) == 2
    assert "là một tệp, không phải thư mục" in capsys.readouterr().err


@pytest.mark.slow
def test_consolidate_reads_inbox_of_the_period_by_default(tmp_path, monkeypatch, clean, capsys):
    monkeypatch.chdir(tmp_path)
    inbox = tmp_path / "inbox" / "2020-H1" / "nhận ngày 20-6"
    inbox.mkdir(parents=True)
    clean.rename(inbox / clean.name)
    assert main([*CONSOLIDATE, "--quiet", "--no-feedback"]) == 0
    out = capsys.readouterr().out
    assert f"Hộp thư: {Path('inbox') / '2020-H1'}" in out and "đã nhận 1/21 đơn vị" in out
    assert "TỆP MẪU" not in out
    assert (tmp_path / "output" / "2020-H1" / "values.csv").exists()


@pytest.mark.slow
def test_consolidate_the_samples_says_so_loudly_and_finds_duc_chinh(tmp_path, capsys):
    """`make consolidate` on a fresh clone: the shipped samples, "8.28" at Kết quả hoạt động!D16."""
    out = tmp_path / "Kết quả 2020"
    assert main([*CONSOLIDATE, "--inbox", str(SAMPLES), "--out", str(out), "--quiet", "--no-feedback"]) == 0
    printed = capsys.readouterr().out
    assert "!! CHÚ Ý: 20 tệp là TỆP MẪU (số liệu giả để chạy thử), không phải báo cáo thật." in printed
    findings = (out / "2020-H1" / "findings.csv").read_text(encoding="utf-8-sig")
    line = next(x for x in findings.splitlines() if "07093" in x and ";D16;" in x)
    assert "8.28" in line and "Kết quả hoạt động" in line


def test_console_script_runs(clean):
    exe = [sys.executable, "-m", "pipeline.cli", "check", str(clean)]
    done = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_console_script_argument_error_has_no_traceback(tmp_path):
    exe = [sys.executable, "-m", "pipeline.cli", "consolidate", "--period", "2020-H1", "--timeout", "-1"]
    done = subprocess.run(exe, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "tham số --timeout" in done.stderr


@pytest.mark.parametrize(
    ("received", "errors", "strict", "attention", "status"),
    [(18, 3, False, False, 0), (18, 0, True, False, 0), (18, 3, True, False, 1), (0, 0, False, False, 1),
     (18, 0, False, True, 1)],
)
def test_consolidate_exit_status_says_when_the_figures_need_attention(received, errors, strict, attention,
                                                                      status):
    """1 when nobody reported, --strict left units out, no file is of the run's period or the self-test
    failed (`attention`)."""
    from types import SimpleNamespace

    summary = SimpleNamespace(received=received, errors=errors, attention=attention)
    assert cli._consolidate_status(summary, strict) == status
