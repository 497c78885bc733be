"""`tonghop history import`: earlier results (a district workbook's "Dữ liệu", values.csv in either form)
loaded into the history store, so that the first real run already compares with the previous period."""

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from sample_inbox import make_samples

from pipeline.cli.commands import main
from pipeline.definition import load_definition
from pipeline.history.imports import read_past_values
from pipeline.writers.outputs import VALUES_HEADERS, csv_number, read_csv

DEF = load_definition()


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """The 2019-H2 results of the sample inbox, consolidated without a store."""
    base = tmp_path_factory.mktemp("earlier")
    make_samples(base / "inbox", "2019-H2")
    assert (
        main(
            [
                "consolidate",
                "--inbox",
                str(base / "inbox"),
                "--out",
                str(base / "out"),
                "--period",
                "2019-H2",
                "--quiet",
                "--no-feedback",
                "--no-store",
            ]
        )
        == 0
    )
    return base / "out" / "2019-H2"


def _query(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def _district(path: Path) -> dict[str, float]:
    return dict(_query(path, "SELECT field, value FROM district_figures"))


@pytest.mark.parametrize("source", ["values.csv", "thi-xa-dong-trieu.xlsx"])
def test_import_earlier_results_and_compare_with_them(earlier, tmp_path, capsys, source):
    store = tmp_path / "lich-su.sqlite"
    args = ["history", "import", str(earlier / source), "--store", str(store)]
    assert main(args + (["--period", "2019-H2"] if source.endswith(".csv") else [])) == 0
    out = capsys.readouterr().out
    assert f"Đã nạp «{source}»" in out and "kỳ 2019-H2, 18 đơn vị" in out
    assert _query(store, "SELECT command, period FROM runs") == [("import", "2019-H2")]
    assert _query(store, "SELECT count(DISTINCT unit_code) FROM submissions WHERE status = 'used'") == [(18,)]
    got = _query(
        store,
        "SELECT v.value, v.raw, v.cell FROM cell_values v JOIN submissions s USING (submission_id)"
        " WHERE s.unit_code = '07093' AND v.field = 'total.participants'",
    )
    assert got == [(828.0, "8.28", "D16")]
    values = read_csv(earlier / "values.csv", VALUES_HEADERS)
    tp = values.loc[(values["field"] == "total.participants") & (values["counted"] == "Có"), "value"]
    tp = tp.map(csv_number).sum()
    assert _district(store)["total.participants"] == tp
    # the district figures are those the district workbook printed
    printed = {
        r[1]: r[2]
        for r in pd.read_excel(
            earlier / "thi-xa-dong-trieu.xlsx", sheet_name="Tổng hợp", header=None, engine="calamine"
        ).itertuples(index=False)
    }
    assert _district(store)["households"] == printed["Số hộ"]


def test_import_is_what_comparisons_use(earlier, tmp_path, capsys):
    base = tmp_path
    make_samples(base / "inbox", "2020-H1")
    store = base / "out" / "lich-su.sqlite"
    assert (
        main(
            [
                "history",
                "import",
                str(earlier / "values.csv"),
                "--period",
                "2019-H2",
                "--out",
                str(base / "out"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "consolidate",
                "--inbox",
                str(base / "inbox"),
                "--out",
                str(base / "out"),
                "--period",
                "2020-H1",
                "--quiet",
                "--no-feedback",
            ]
        )
        == 0
    )
    summary = pd.read_excel(
        base / "out" / "2020-H1" / "thi-xa-dong-trieu.xlsx",
        sheet_name="Tổng hợp",
        header=None,
        engine="calamine",
    )
    assert "Kỳ trước, 6 tháng cuối năm 2019" in summary.iloc[:, 5].tolist()
    assert _query(store, "SELECT command FROM runs ORDER BY run_id") == [("import",), ("consolidate",)]


_HEAD = (
    '"Kỳ báo cáo";"Huyện";"Mã đơn vị";"Tên đơn vị";"Trang";"Mã mục";"Mục";"Đơn vị tính";"Giá trị";'
    '"Giá trị gốc";"Được tổng hợp";"Lý do không tổng hợp";"Tệp";"Ô"'
)
_ROWS = [  # code, name, sheet, id, label, unit, value, raw, counted, why not, file, cell
    (
        '="07093"',
        "Phường Đức Chính",
        "Thông tin chung",
        "households",
        "Số hộ",
        "hộ",
        "2379",
        "2.379",
        "Có",
        "",
        "duc-chinh.xlsx",
        "B9",
    ),
    (
        '="07093"',
        "Phường Đức Chính",
        "Thông tin chung",
        "production_value_bn",
        "Tổng giá trị sản xuất",
        "tỷ đồng",
        "785,87",
        "785,87",
        "Có",
        "",
        "duc-chinh.xlsx",
        "B12",
    ),
    (
        '="07093"',
        "Phường Đức Chính",
        "Huy động xã hội",
        "mobilization_unions",
        "Sự tham gia",
        "",
        "Tốt",
        "Tốt",
        "Có",
        "",
        "duc-chinh.xlsx",
        "B5",
    ),
    (
        "7069",
        "Phường Mạo Khê",
        "Thông tin chung",
        "households",
        "Số hộ",
        "hộ",
        "1629",
        "1629",
        "Có",
        "",
        "mao-khe.xls",
        "B9",
    ),
    (
        "7069",
        "Phường Mạo Khê",
        "Thông tin chung",
        "production_value_bn",
        "Tổng giá trị sản xuất",
        "tỷ đồng",
        '"9000,5"',
        "9.000,5",
        "Không",
        "lỗi ở ô này",
        "mao-khe.xls",
        "B12",
    ),
    (
        '="99999"',
        "Nơi khác",
        "Thông tin chung",
        "households",
        "Số hộ",
        "hộ",
        "10",
        "10",
        "Có",
        "",
        "x.xlsx",
        "B9",
    ),
    (
        '="07093"',
        "Phường Đức Chính",
        "Thông tin chung",
        "khong_co",
        "Mục lạ",
        "",
        "1",
        "1",
        "Có",
        "",
        "duc-chinh.xlsx",
        "B99",
    ),
]
VIETNAMESE = "".join(
    f"{line}\r\n" for line in [_HEAD, *(";".join(["2019-H2", "Thị xã Đông Triều", *r]) for r in _ROWS)]
)


def test_import_the_vietnamese_values_csv(tmp_path, capsys):
    path = tmp_path / "values.csv"
    path.write_bytes("\ufeff".encode() + VIETNAMESE.encode("utf-8"))
    store = tmp_path / "lich-su.sqlite"
    assert main(["history", "import", str(path), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "kỳ 2019-H2, 3 đơn vị, 6 giá trị" in out
    assert "Bỏ qua các mục không có trong mẫu báo cáo: Mục lạ." in out
    assert "không có trong danh sách" in out and "99999" in out
    got = _query(
        store,
        "SELECT s.unit_code, s.file, v.field, v.value, v.text, v.raw, v.counted, v.cell "
        "FROM cell_values v JOIN submissions s USING (submission_id) ORDER BY s.unit_code, v.field",
    )
    assert got[:5] == [
        ("07069", "mao-khe.xls", "households", 1629.0, None, "1629", 1, "B9"),
        ("07069", "mao-khe.xls", "production_value_bn", 9000.5, None, "9.000,5", 0, "B12"),
        ("07093", "duc-chinh.xlsx", "households", 2379.0, None, "2.379", 1, "B9"),
        ("07093", "duc-chinh.xlsx", "mobilization_unions", None, "Tốt", None, 1, "B5"),
        ("07093", "duc-chinh.xlsx", "production_value_bn", 785.87, None, "785,87", 1, "B12"),
    ]
    district = _district(store)
    assert district["households"] == 2379 + 1629  # 99999 is in no district of the list
    assert district["production_value_bn"] == pytest.approx(785.87)  # the value not counted stays out


def test_read_past_values_maps_labels_when_ids_are_absent(tmp_path):
    path = tmp_path / "cu.csv"
    path.write_text(
        "Kỳ;Mã đơn vị;Trang;Mục;Giá trị\n2019-H1;07093;Thông tin chung;Số hộ;2.379\n"
        "2019-H1;07093;Kết quả hoạt động;Tổng số – Số lượt người tham gia: Tổng số;828\n",
        encoding="utf-8",
    )
    frame, said = read_past_values(path, DEF)
    assert said is None
    assert frame[["period", "unit_code", "field", "value"]].values.tolist() == [
        ["2019-H1", "07093", "households", 2379.0],
        ["2019-H1", "07093", "total.participants", 828.0],
    ]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "Không tìm thấy tệp"),
        (b"unit_code,field,value\n07093,households,2379\n", [], "không ghi kỳ báo cáo"),
        (b"a,b,c\n1,2,3\n", ["--period", "2019-H2"], "không có các cột cần thiết"),
        (b"\x00\x01 not a workbook", ["--period", "2019-H2"], "Không đọc được tệp"),
    ],
)
def test_import_problems_are_said_in_vietnamese(tmp_path, capsys, content, args, message):
    name = "x.xlsx" if content and content.startswith(b"\x00") else "values.csv"
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    store = tmp_path / "lich-su.sqlite"
    assert main(["history", "import", str(path), "--store", str(store), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if store.exists():
        assert _query(store, "SELECT count(*) FROM runs") == [(0,)]


def test_diff_prints_the_changed_cells(earlier, tmp_path, capsys):
    inbox = earlier.parent.parent / "inbox"
    a, b = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    shutil.copy(inbox / "07078-trang-luong-lan-1.xlsx", a)
    shutil.copy(inbox / "07078-trang-luong-lan-2.xlsx", b)
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "So sánh hai tệp báo cáo của Xã Tràng Lương" in out
    assert "1 ô có số liệu thay đổi:" in out
    assert "Trang «Thông tin chung», ô B23 (Ngày báo cáo): 05/06/2020 → 28/06/2020" in out
    assert main(["diff", str(a), str(a)]) == 0
    assert "Số liệu của hai tệp giống nhau." in capsys.readouterr().out
    assert main(["diff", str(a), str(inbox / "07093-duc-chinh.xlsx")]) == 0
    assert "hai tệp của hai đơn vị khác nhau" in capsys.readouterr().out
    (tmp_path / "bad.xlsx").write_bytes(b"not a workbook")
    assert main(["diff", str(a), str(tmp_path / "bad.xlsx")]) == 2
    err = capsys.readouterr().err
    assert "Không đọc được số liệu của" in err and "Traceback" not in err
    assert main(["diff", str(a), str(tmp_path / "none.xlsx")]) == 2


@pytest.mark.parametrize(
    ("texts", "period"),
    [
        (
            [
                "BÁO CÁO …",
                "Kỳ báo cáo: 6 tháng đầu năm 2020 – Tỉnh Quảng Ninh",
                "Đông Triều, ngày 20 tháng 7 năm 2020",
            ],
            "2020-H1",
        ),
        (["Đông Triều, ngày 20 tháng 1 năm 2021", "KỲ BÁO CÁO: 6 THÁNG CUỐI NĂM 2020"], "2020-H2"),
        (["Đông Triều, ngày 20 tháng 12 năm 2020", "Kỳ báo cáo: năm 2019"], "2019"),
        (["Đông Triều, ngày 20 tháng 7 năm 2020"], None),  # a date names no period
    ],
)
def test_the_period_a_workbook_heading_names(texts, period):
    from pipeline.history.imports import _period_from_text

    assert _period_from_text(texts, DEF) == period
