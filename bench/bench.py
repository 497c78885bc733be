#!/usr/bin/env python
"""Speed benchmark of `tonghop consolidate`, side by side with the naive pandas way and the bare floor.

    python bench/bench.py --n 1000 [--repeat 3] [--jobs J] [--cache bench/cache] [--out bench/results.json]

1. A synthetic units list shaped like the country (about 14 units a district, about 10 districts a
   province, 5-digit unique codes, names unique per district once folded) is written as a units CSV.
2. N submissions are generated from the current templates (`render_workbook` with realistic, skewed
   figures from bench/figures.py), a few percent with the slips of DOMAIN.md and a few percent with
   plausibility slips (a figure 10 to 1,000,000 times too large, ...; labelled in labels.csv), about 5 %
   saved as .xls; about 2 % of the units send nothing. The inbox is cached under <cache>/n<N>/, keyed
   by N and a hash of schemas/*.yaml, pipeline/writers/template.py, samples/sample_inbox.py,
   bench/figures.py and this generator's version, and is resumable. Generation is never timed.
3. Timed, `--repeat` times each, medians reported, all in this one run of the script:
   - floor: python-calamine reading every needed sheet of every file (`to_python()`), nothing else;
   - naive: `pandas.read_excel(path, sheet_name=None, engine="openpyxl")` for every file (.xls with
     engine="calamine": openpyxl cannot read .xls and xlrd is not installed), concatenated, then a
     groupby sum of every cell by (sheet, row); reading timed apart from the whole;
   - tonghop: the real `tonghop consolidate` in a fresh process per run, with `--no-feedback` and
     with the feedback workbooks; stage times from the run's manifest.json, peak memory (PSS) of its process
     tree sampled with psutil.
4. Prints a table and writes the results as JSON (see bench/README.md for every key).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "samples"):  # the pipeline of this tree; the sample generator
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from figures import HIGHLAND_PROVINCES, SLIP_KINDS, make_slip, realistic  # noqa: E402

from pipeline.definition import META_SHEET, SCHEMAS_DIR, load_definition  # noqa: E402
from pipeline.text import slug, unit_key  # noqa: E402
from pipeline.units import UNIT_COLUMNS  # noqa: E402

PERIOD = "2020-H1"
GENERATOR_VERSION = "2"  # bump when the generator below changes what it writes
UNITS_PER_DISTRICT, DISTRICTS_PER_PROVINCE = 14, 10
MISSING_RATE, XLS_RATE, SLIP_RATE, VN_TEXT_RATE = 0.02, 0.05, 0.06, 0.08
PLAUSIBILITY_SLIP_RATE = 0.06  # units (without another slip) with a slip of figures.SLIP_KINDS
NAIVE_FULL_REPEAT_MAX = 2000  # above this many files the naive way runs once unless --naive-repeat says so

# Common ward and commune names (many recur across the country, which is why names are unique only
# within a district). None starts with a word that unit_key strips ("Phường", "Xã", "P.", "TT.").
_PLACE = [
    "Hòa Bình", "Tân Lập", "Quang Trung", "Trần Phú", "Lê Lợi", "Hồng Phong", "Minh Khai", "Thanh Xuân",
    "An Khánh", "Đông Hòa", "Phú Lợi", "Bình An", "Tân Tiến", "Thống Nhất", "Hưng Đạo", "Nam Sơn", "Bắc Sơn",
    "Xuân Phương", "Yên Hòa", "Đồng Tâm", "Hoàng Văn Thụ", "Quyết Thắng", "Hợp Thành", "Trung Sơn",
    "Đại Đồng", "Kim Liên", "Phúc Thịnh", "Vĩnh Ninh", "Cẩm Thủy", "Thủy An", "Đức Chính", "Mạo Khê",
    "Tràng Lương", "Hồng Thái", "Bình Dương", "Nguyễn Huệ", "Hoàng Quế", "Yên Thọ", "Việt Dân", "Tân Việt",
    "An Sinh", "Kim Sơn", "Hưng Long", "Phước Hòa", "Long Hải", "Mỹ Xuyên", "Cửa Nam", "Điện Biên",
    "Ngọc Hà", "Phù Đổng", "Sơn Tây", "Tam Hiệp", "Vạn Phúc", "Tiền Phong", "Đoàn Kết", "Độc Lập",
]
_PROVINCE = [
    "Quảng Ninh", "Hải Dương", "Bắc Giang", "Thái Bình", "Nam Định", "Ninh Bình", "Thanh Hóa", "Nghệ An",
    "Hà Tĩnh", "Quảng Bình", "Quảng Trị", "Quảng Nam", "Quảng Ngãi", "Bình Định", "Phú Yên", "Khánh Hòa",
    "Lâm Đồng", "Đắk Lắk", "Gia Lai", "Kon Tum", "Long An", "Tiền Giang", "Bến Tre", "Trà Vinh",
    "Vĩnh Long", "Đồng Tháp", "An Giang", "Kiên Giang", "Cà Mau", "Bạc Liêu", "Sóc Trăng", "Hậu Giang",
    "Tây Ninh", "Bình Phước", "Đồng Nai", "Bình Thuận", "Ninh Thuận", "Lào Cai", "Yên Bái", "Tuyên Quang",
]
_DISTRICT_KIND = [("Huyện", 0.7), ("Thị xã", 0.15), ("Thành phố", 0.1), ("Quận", 0.05)]
# what a district of each kind is made of: a quận of phường, a huyện of xã and a thị trấn or two
_UNIT_TYPE = {"Huyện": [("xã", 0.9), ("thị trấn", 0.1)], "Thị xã": [("xã", 0.55), ("phường", 0.45)],
              "Thành phố": [("xã", 0.35), ("phường", 0.65)], "Quận": [("phường", 1.0)]}
_ROWS = ["literacy", "vocational", "law", "health", "environment", "culture", "economy", "life_skills",
         "other", "arts_sports"]
SLIPS = ["total-typed-wrong", "total-as-text", "decimal-count", "hedge", "blank-female", "female-over",
         "percent-fraction", "resubmitted"]


def _pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


# ---------------------------------------------------------------------------------------------------------
# 1. the synthetic units list


def make_units(n: int) -> list[dict[str, str]]:
    """N units in districts of about 14, districts in provinces of about 10; deterministic."""
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = random.Random(f"tonghop-bench-units-{n}")
    n_districts = max(1, n // UNITS_PER_DISTRICT)
    sizes = [n // n_districts + (1 if i < n % n_districts else 0) for i in range(n_districts)]
    for i in range(0, n_districts - 1, 2):  # jitter pairs, keeping the sum: districts of 10 to 18 units
        k = rng.randint(-4, 4)
        if sizes[i] + k >= 1 and sizes[i + 1] - k >= 1:
            sizes[i], sizes[i + 1] = sizes[i] + k, sizes[i + 1] - k
    n_provinces = max(1, round(n_districts / DISTRICTS_PER_PROVINCE))
    step = 3 if n * 3 < 100_000 else 1  # GSO codes step by 3; 5 digits hold 33,333 units that way
    if n * step >= 100_000:
        raise ValueError("at most 99,999 units fit 5-digit codes")
    units: list[dict[str, str]] = []
    district_names: set[str] = set()
    code = 0
    for d, size in enumerate(sizes):
        p = d * n_provinces // n_districts
        pbase = _PROVINCE[p % len(_PROVINCE)]
        province_name = f"Tỉnh {pbase}" + (f" {p // len(_PROVINCE) + 1}" if p >= len(_PROVINCE) else "")
        kind = _pick(rng, _DISTRICT_KIND)
        highland = kind != "Quận" and rng.random() < (0.75 if pbase in HIGHLAND_PROVINCES else 0.08)
        base = f"{kind} {rng.choice(_PLACE)}"
        dname, k = base, 1
        while slug(dname) in district_names:  # district workbooks are named by slug: keep them distinct
            k += 1
            dname = f"{base} {k}"
        district_names.add(slug(dname))
        keys: set[str] = set()
        for _ in range(size):
            code += step
            place = rng.choice(_PLACE)
            name, k = place, 1
            while unit_key(name) in keys:
                k += 1
                name = f"{place} {k}"
            keys.add(unit_key(name))
            units.append({"unit_code": f"{code:05d}", "unit_name": name,
                          "unit_type": _pick(rng, _UNIT_TYPE[kind]),
                          "district_code": f"{d + 1:03d}", "district_name": dname,
                          "province_code": f"{p + 1:02d}", "province_name": province_name,
                          "highland": highland})
    return units


def write_units_csv(units: list[dict[str, str]], path: Path) -> None:
    import csv

    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=UNIT_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(units)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------
# 2. the submissions


def _vn(n: int) -> str:
    """2379 → "2.379" (Vietnamese thousands separator)."""
    return f"{n:,}".replace(",", ".")


def plan_submissions(units: list[dict[str, str]], seed: str = "",
                     plausibility_rate: float = PLAUSIBILITY_SLIP_RATE,
                     slip_rate: float = SLIP_RATE) -> list[dict]:
    """What to write for every unit: a list of tasks (file name, unit, values, cell edits, xls, slip, label).
    `seed` changes every unit's figures and slips; `label` is figures.make_slip's label of a plausibility
    slip (kind, field, factor), None for the other slips and clean units."""
    tasks = []
    for u in units:
        code = u["unit_code"]
        rng = random.Random(f"tonghop-bench-{seed}{code}")
        if rng.random() < MISSING_RATE:
            continue
        values = realistic(u, random.Random(f"tonghop-bench-figures-{seed}{code}"))
        unit = dict(u, full_name=f"{u['unit_type'].capitalize()} {u['unit_name']}")
        stem = f"{u['district_code']}/{code}-{slug(u['unit_name'])}"
        ext = ".xls" if rng.random() < XLS_RATE else ".xlsx"
        edits: dict[str, object] = {}
        percent: list[str] = []
        slip = rng.choice(SLIPS) if rng.random() < slip_rate else ""
        label = None
        if not slip and rng.random() < plausibility_rate:
            label = make_slip(values, rng.choice(SLIP_KINDS), rng)
            slip = label["kind"] if label else ""
        total = int(values.get("total.participants") or 0)
        if slip == "total-as-text" and total < 100:
            slip = "total-typed-wrong"
        if slip == "total-typed-wrong":  # typed over the formula
            edits["total.participants"] = total + rng.choice([-20, -10, -1, 1, 10, 100]) if total > 20 else 99
        elif slip == "total-as-text":  # "8.28" for 828: not a valid Vietnamese number
            edits["total.participants"] = f"{total // 100}.{total % 100:02d}"
        elif slip == "decimal-count":  # 2.215 typed in an en-US Excel: a decimal in a count
            values["conference_attendees"] = round(int(values["conference_attendees"]) / 1000, 3)
        elif slip == "hedge":
            if rng.random() < 0.5:
                values["population"] = f"gần {_vn(round(int(values['population']), -3))}"
            else:
                values["conferences"] = f"trên {values['conferences']}"
        elif slip == "blank-female":
            for row in [*_ROWS, "total"]:
                values.pop(f"{row}.female", None)
        elif slip == "female-over":
            row = next((r for r in _ROWS if values.get(f"{r}.participants")), None)
            if row:
                extra = int(values[f"{row}.participants"]) + 15 - int(values[f"{row}.female"])
                values[f"{row}.female"] = int(values[f"{row}.participants"]) + 15
                values["total.female"] = int(values["total.female"]) + extra
        elif slip == "percent-fraction":  # "92%" typed: Excel stores 0.92 with a percent format
            edits["waste_collection_rate"] = round(float(values["waste_collection_rate"]) / 100, 3)
            percent.append("waste_collection_rate")
        elif not slip and rng.random() < VN_TEXT_RATE:  # right figures typed as Vietnamese text
            values["households"] = _vn(int(values["households"]))
            values["production_value_bn"] = f"{values['production_value_bn']:.2f}".replace(".", ",")
        base = {"unit": unit, "values": values, "edits": edits, "percent": percent, "xls": ext == ".xls",
                "slip": slip, "unit_code": code, "label": label}
        if slip == "resubmitted":  # a first version with a wrong board total, then the corrected one
            first = dict(values, board_total=9, report_date=values["report_date"].replace(day=5))
            tasks.append(base | {"name": f"{stem}-lan-1{ext}", "values": first})
            tasks.append(base | {"name": f"{stem}-lan-2{ext}"})
        else:
            tasks.append(base | {"name": f"{stem}{ext}"})
    return tasks


def write_labels(tasks: list[dict], path: Path) -> None:
    """labels.csv: every file with a slip, the slip's kind and, for a plausibility slip, the field typed
    wrong and the factor (what bench/plausibility.py computes recall from)."""
    import csv

    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["unit_code", "file", "slip", "field", "factor"])
        for t in tasks:
            if t["slip"]:
                label = t.get("label") or {}
                w.writerow([t["unit_code"], t["name"], t["slip"], label.get("field", ""),
                            label.get("factor", "")])
    tmp.replace(path)


_GEN: dict = {}


def _gen_init(inbox: str, tmp: str) -> None:
    _GEN.update(definition=load_definition(), inbox=Path(inbox), tmp=Path(tmp))


def _gen_one(task: dict) -> str:
    from sample_inbox import as_xls, set_cells

    from pipeline.writers.template import render_workbook

    definition, inbox, tmpdir = _GEN["definition"], _GEN["inbox"], _GEN["tmp"]
    final = inbox / task["name"]
    if final.exists():
        return "skipped"
    tmp = tmpdir / f"{os.getpid()}-{final.stem}.xlsx"
    render_workbook(definition, tmp, period=PERIOD, unit=task["unit"], values=task["values"])
    if task["edits"]:
        set_cells(tmp, definition, task["edits"], percent=tuple(task["percent"]))
    final.parent.mkdir(parents=True, exist_ok=True)
    if task["xls"]:
        xls = tmp.with_suffix(".xls")
        as_xls(tmp, xls, definition)
        tmp.unlink()
        tmp = xls
    os.replace(tmp, final)
    return "written"


def cache_key(n: int) -> str:
    """N, the report definitions (schemas/*.yaml but rules.yaml, whose messages never reach a submission),
    the renderer, the sample figures and this generator's version: what the generated files depend on."""
    h = hashlib.sha256(f"n={n};generator={GENERATOR_VERSION};period={PERIOD}".encode())
    yamls = [p for p in sorted(SCHEMAS_DIR.glob("*.yaml")) if p.name != "rules.yaml"]
    code = [ROOT / "pipeline" / "writers" / "template.py", ROOT / "samples" / "sample_inbox.py",
            ROOT / "bench" / "figures.py"]
    for p in [*yamls, *code]:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _say(msg: str, end: str = "\n") -> None:
    print(msg, end=end, file=sys.stderr, flush=True)


def prepare(n: int, cache: Path, gen_jobs: int) -> dict:
    """Make sure <cache>/n<N>/ holds the units CSV and the full inbox for the current templates."""
    folder = cache / f"n{n}"
    key = cache_key(n)
    key_file, done_file = folder / "key.txt", folder / "complete.json"
    if folder.exists() and (not key_file.exists() or key_file.read_text().strip() != key):
        _say(f"Templates or generator changed: regenerating {folder}")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    inbox, tmp = folder / "inbox", folder / "tmp"
    if done_file.exists():
        info = json.loads(done_file.read_text())
        if info.get("key") == key:
            if not (folder / "units.csv").exists():  # deterministic: rewrite it rather than regenerate all
                write_units_csv(make_units(n), folder / "units.csv")
            return info | {"folder": str(folder), "inbox": str(inbox), "units_csv": str(folder / "units.csv")}
    units = make_units(n)
    write_units_csv(units, folder / "units.csv")
    tasks = plan_submissions(units)
    write_labels(tasks, folder / "labels.csv")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    inbox.mkdir(exist_ok=True)
    todo = [t for t in tasks if not (inbox / t["name"]).exists()]
    _say(f"Generating {len(todo)} of {len(tasks)} files into {inbox} "
         f"({len(tasks) - len(todo)} already there)")
    t0, last, done = time.perf_counter(), 0.0, 0
    if todo:
        jobs = max(1, min(gen_jobs, len(todo) // 20 or 1))
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(jobs, initializer=_gen_init, initargs=(str(inbox), str(tmp))) as pool:
            for _ in pool.imap_unordered(_gen_one, todo, chunksize=8):
                done += 1
                now = time.perf_counter()
                if now - last > 2 or done == len(todo):
                    rate = done / (now - t0)
                    eta = (len(todo) - done) / rate if rate else 0
                    _say(f"\r  generated {done}/{len(todo)} ({rate:.0f} files/s, {eta:.0f} s left)   ",
                         end="\n" if done == len(todo) else "")
                    last = now
    shutil.rmtree(tmp, ignore_errors=True)
    names = {t["name"] for t in tasks}
    stray = [p for p in inbox.rglob("*") if p.is_file() and str(p.relative_to(inbox)) not in names]
    for p in stray:
        p.unlink()
    slips = Counter(slip for _, slip in {(t["unit_code"], t["slip"]) for t in tasks} if slip)
    info = {"key": key, "files": len(tasks), "units": len(units),
            "districts": len({u["district_code"] for u in units}),
            "provinces": len({u["province_code"] for u in units}),
            "units_sending": len({t["unit_code"] for t in tasks}),
            "xls": sum(t["xls"] for t in tasks), "slips": dict(sorted(slips.items())),
            "generation_seconds": round(time.perf_counter() - t0, 1)}
    done_file.write_text(json.dumps(info, ensure_ascii=False, indent=1))
    return info | {"folder": str(folder), "inbox": str(inbox), "units_csv": str(folder / "units.csv")}


# ---------------------------------------------------------------------------------------------------------
# 3-5. the measurements


def list_files(inbox: Path) -> list[Path]:
    return sorted(p for p in inbox.rglob("*") if p.is_file() and p.suffix.lower() in {".xlsx", ".xls"})


def warm(files: list[Path]) -> None:
    """Read every file once so that every measurement starts from the same (warm) page cache."""
    for p in files:
        p.read_bytes()


def floor(files: list[Path], sheets: list[str]) -> float:
    """python-calamine reading every needed sheet of every file with to_python(), and nothing else."""
    import python_calamine as pc

    t0 = time.perf_counter()
    for p in files:
        wb = pc.CalamineWorkbook.from_path(str(p))
        names = set(wb.sheet_names)
        for s in sheets:
            if s in names:
                wb.get_sheet_by_name(s).to_python()
        wb.close()
    return time.perf_counter() - t0


def naive(files: list[Path]) -> dict[str, float]:
    """pandas.read_excel of every sheet of every file (openpyxl), concatenated, then a groupby sum."""
    import pandas as pd

    t0 = time.perf_counter()
    frames, keys = [], []
    for i, p in enumerate(files):
        engine = "openpyxl" if p.suffix.lower() in (".xlsx", ".xlsm") else "calamine"
        for sheet, df in pd.read_excel(p, sheet_name=None, engine=engine, header=None).items():
            frames.append(df)
            keys.append((i, sheet))
    t_read = time.perf_counter()
    big = pd.concat(frames, keys=keys, names=["file", "sheet", "row"])
    total = big.apply(pd.to_numeric, errors="coerce").groupby(level=["sheet", "row"]).sum()
    t_end = time.perf_counter()
    assert len(total) > 0
    return {"read": t_read - t0, "total": t_end - t0, "concat_sum": t_end - t_read}


_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from pipeline.cli import main  # (the old layout and the new: pipeline.cli.main)
try:  # the rooms' layout imports the commands on the first call: import them here, before t1, as before
    import pipeline.cli.commands  # noqa: F401
except ImportError:
    pass
t1 = time.perf_counter()
rc = main(sys.argv[1:])
t2 = time.perf_counter()
# ru_maxrss survives exec: it would report the benchmark's own size at spawn. VmHWM is this image's own peak.
try:
    with open("/proc/self/status") as fh:
        self_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
except (OSError, StopIteration, ValueError):
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("BENCH-RESULT " + json.dumps({"rc": rc, "import": t1 - t0, "job": t2 - t1, "self_kb": self_kb,
                                    "children_kb": kids_kb}), flush=True)
"""


def _pss(procs) -> int:
    """PSS summed over these processes, in bytes: pages that forked workers share with their parent
    count once. Reading /proc/<pid>/smaps_rollup walks the page tables: about 15 ms per process of
    700 MB, so it is read only now and then (see `run_tonghop`)."""
    import psutil

    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            m = p.memory_full_info()
            total += getattr(m, "pss", m.rss)
    return total


def _rss(procs) -> int:
    """RSS summed over these processes (cheap: /proc/<pid>/statm); overcounts pages shared after fork."""
    import psutil

    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_tonghop(inbox: Path, units_csv: Path, out: Path, *, feedback: bool, jobs: int | None,
                root: Path = ROOT, extra: tuple[str, ...] = ()) -> dict:
    """One `tonghop consolidate` in a fresh process, of the code in `root` (this tree, or --baseline;
    `extra`: more of its arguments); wall times, stage times, peak RSS."""
    import psutil

    shutil.rmtree(out, ignore_errors=True)
    args = ["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD,
            "--units", str(units_csv), "--quiet", *extra]
    if not feedback:
        args.append("--no-feedback")
    if jobs is not None:
        args += ["--jobs", str(jobs)]
    t0 = time.perf_counter()
    # `python -c` puts the working folder first on sys.path: the child runs the pipeline package of `root`
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *args], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = [0, 0]
    stop = threading.Event()

    def sample() -> None:
        """The tree's RSS every 50 ms (its process list every 0.5 s), its PSS when the RSS reaches a new
        high (at most once a second) and every 5 s. Sampling PSS every 20 ms, as this script once did,
        took a whole core of the two from the run it measured (70 ms a sample at 10,000 files)."""
        try:
            ps = psutil.Process(proc.pid)
        except psutil.Error:
            return
        procs, listed, pss_at, pss_when = [ps], 0.0, 0, 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now - listed > 0.5:
                with contextlib.suppress(psutil.Error):
                    procs, listed = [ps, *ps.children(recursive=True)], now
            rss = _rss(procs)
            peak[1] = max(peak[1], rss)
            if (rss > pss_at * 1.02 and now - pss_when >= 1.0) or now - pss_when >= 5.0:
                peak[0], pss_at, pss_when = max(peak[0], _pss(procs)), rss, now
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    line = next((s for s in stdout.splitlines() if s.startswith("BENCH-RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"tonghop consolidate failed (exit {proc.returncode}):\n{stdout[-3000:]}\n"
                           f"{stderr[-3000:]}")
    child = json.loads(line.split(" ", 1)[1])
    if child["rc"] != 0:
        raise RuntimeError(f"tonghop consolidate exited {child['rc']}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    manifest = json.loads((out / PERIOD / "manifest.json").read_text(encoding="utf-8"))
    return {"process_seconds": wall, "import_seconds": child["import"], "job_seconds": child["job"],
            "stages": manifest["timings"], "counts": manifest["counts"],
            "peak_rss_mb": max(peak[0] / 2**20, child["self_kb"] / 1024),
            "tree_rss_sum_mb": peak[1] / 2**20,
            "main_rss_mb": child["self_kb"] / 1024, "worker_rss_mb": child["children_kb"] / 1024}


# ---------------------------------------------------------------------------------------------------------
# 6. the report


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _median_stages(runs: list[dict]) -> dict[str, float]:
    keys = list(dict.fromkeys(k for r in runs for k in r["stages"]))
    return {k: round(_median([r["stages"].get(k, 0.0) for r in runs]), 4) for k in keys}


def _git() -> dict[str, object]:
    """The commit measured and whether pipeline/ had uncommitted changes (timings belong to a version)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "pipeline_changed": bool(git("status", "--porcelain", "--", "pipeline", "schemas"))}


def _load() -> list[float]:
    """1, 5 and 15 minute load averages: other work on the machine skews every timing."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def summarise(info: dict, files: int, full: list[dict], nofb: list[dict], naive_runs: list[dict],
              floor_runs: list[float], args) -> dict:
    def med(runs, key):
        return _median([r[key] for r in runs])

    stages, stages_nofb = _median_stages(full), _median_stages(nofb)
    job_full, job_nofb = med(full, "job_seconds"), med(nofb, "job_seconds")
    naive_read, naive_total = med(naive_runs, "read"), med(naive_runs, "total")
    floor_s = _median(floor_runs)
    r = {
        "files": files,
        "units": info["units"], "districts": info["districts"], "provinces": info["provinces"],
        "units_sending": info["units_sending"], "xls_files": info["xls"], "slips": info["slips"],
        "repeat": args.repeat, "naive_repeat": len(naive_runs), "jobs": args.jobs,
        "stages": stages,
        "stages_no_feedback": stages_nofb,
        "job_seconds": round(job_full, 3),
        "job_seconds_no_feedback": round(job_nofb, 3),
        "with_feedback_seconds": round(job_full, 3),
        "process_seconds": round(med(full, "process_seconds"), 3),
        "process_seconds_no_feedback": round(med(nofb, "process_seconds"), 3),
        "files_per_second": round(files / job_full, 1),
        "files_per_second_no_feedback": round(files / job_nofb, 1),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in full + nofb), 1),
        "peak_rss_mb_with_feedback": round(med(full, "peak_rss_mb"), 1),
        "peak_rss_mb_no_feedback": round(med(nofb, "peak_rss_mb"), 1),
        "main_process_rss_mb": round(max(r["main_rss_mb"] for r in full + nofb), 1),
        "largest_child_rss_mb": round(max(r["worker_rss_mb"] for r in full + nofb), 1),
        "tree_rss_sum_mb": round(max(r["tree_rss_sum_mb"] for r in full + nofb), 1),
        "counts": (full or nofb)[-1]["counts"],
        "validate_ms_per_file": round(1000 * stages_nofb.get("validate", float("nan")) / files, 4),
        "read_ms_per_file": round(1000 * stages_nofb.get("read", float("nan")) / files, 4),
        "job_ms_per_file_no_feedback": round(1000 * job_nofb / files, 3),
        "naive_seconds": round(naive_total, 3),
        "naive_read_seconds": round(naive_read, 3),
        "naive_engine": {"xlsx": "openpyxl",
                         "xls": "calamine (openpyxl cannot read .xls; xlrd not installed)"},
        "floor_seconds": round(floor_s, 3),
        "read_speedup_vs_naive": round(naive_read / stages_nofb["read"], 2),
        "job_speedup_vs_naive": round(naive_total / job_nofb, 2),
        "job_over_floor": round(job_nofb / floor_s, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_average_before": args.load_before,
                    "load_average_after": _load()},
        "git": _git(),
        "runs": {"with_feedback": full, "no_feedback": nofb, "naive": naive_runs,
                 "floor": [round(x, 4) for x in floor_runs]},
    }
    return r


def table(r: dict) -> str:
    fb, nf = r["stages"], r["stages_no_feedback"]
    lines = [
        f"tonghop bench: {r['files']} files from {r['units_sending']}/{r['units']} units, "
        f"{r['districts']} districts, "
        f"{r['provinces']} provinces ({r['xls_files']} .xls, {sum(r['slips'].values())} with slips); "
        f"median of {r['repeat']} runs (naive: {r['naive_repeat']}), {r['machine']['cpus']} CPUs",
        "tonghop found: {} units received, {} errors, {} warnings, {} feedback workbooks".format(
            *(r["counts"].get(k, "?") for k in ("units_received", "errors", "warnings",
                                                "feedback_workbooks"))),
        "",
        f"{'stage (s)':<28}{'full job':>12}{'--no-feedback':>16}",
    ]
    for k in dict.fromkeys([*fb, *nf]):
        lines.append(f"{k:<28}{fb.get(k, 0):>12.3f}{nf.get(k, 0):>16.3f}")
    rows = [
        ("job wall (in process)", r["job_seconds"], r["job_seconds_no_feedback"], "{:.3f}"),
        ("process wall (with start-up)", r["process_seconds"], r["process_seconds_no_feedback"], "{:.3f}"),
        ("files/s", r["files_per_second"], r["files_per_second_no_feedback"], "{:.1f}"),
        ("peak memory MB (tree PSS)", r["peak_rss_mb_with_feedback"], r["peak_rss_mb_no_feedback"],
         "{:.1f}"),
    ]
    for label, a, b, fmt in rows:
        lines.append(f"{label:<28}{fmt.format(a):>12}{fmt.format(b):>16}")
    lines += [
        "",
        f"peak RSS MB                  main process {r['main_process_rss_mb']:.0f}, largest child "
        f"{r['largest_child_rss_mb']:.0f}, RSS summed over the tree {r['tree_rss_sum_mb']:.0f}",
        f"validate per file            {r['validate_ms_per_file']:.3f} ms   "
        f"read per file {r['read_ms_per_file']:.3f} ms",
        f"naive pandas/openpyxl        read {r['naive_read_seconds']:.2f} s, read+concat+groupby sum "
        f"{r['naive_seconds']:.2f} s",
        f"floor (calamine to_python)   {r['floor_seconds']:.2f} s",
        "",
        f"read speedup vs naive        {r['read_speedup_vs_naive']:.1f}x   (naive read / tonghop read stage)",
        f"job speedup vs naive         {r['job_speedup_vs_naive']:.2f}x   (naive read+concat+sum / tonghop "
        "--no-feedback job)",
        f"job over floor               {r['job_over_floor']:.2f}x   (tonghop --no-feedback job / floor)",
    ]
    if "baseline" in r:
        b = r["baseline"]["stages_no_feedback"]
        lines += ["", f"--no-feedback, side by side   {'baseline':>12}{'this tree':>12}{'change':>10}"]
        for k in dict.fromkeys([*b, *nf]):
            before, after = b.get(k, 0.0), nf.get(k, 0.0)
            change = f"{100 * (after - before) / before:+.1f} %" if before else ""
            lines.append(f"{k:<29}{before:>12.3f}{after:>12.3f}{change:>10}")
        before, after = r["baseline"]["job_seconds_no_feedback"], r["job_seconds_no_feedback"]
        lines.append(f"{'job wall (in process)':<29}{before:>12.3f}{after:>12.3f}"
                     f"{100 * (after - before) / before:>+9.1f} %")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="number of units (submissions), default 1000")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement; medians are reported")
    p.add_argument("--naive-repeat", type=int, default=None,
                   help=f"runs of the naive way (default: --repeat; 1 above {NAIVE_FULL_REPEAT_MAX} files)")
    p.add_argument("--jobs", type=int, default=None, help="passed to tonghop consolidate --jobs")
    p.add_argument("--cache", type=Path, default=ROOT / "bench" / "cache", help="generated inboxes")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json", help="results JSON")
    p.add_argument("--gen-jobs", type=int, default=os.cpu_count() or 1, help="processes generating files")
    p.add_argument("--generate-only", action="store_true", help="generate (or resume) the inbox and stop")
    p.add_argument("--skip", default="", help="measurements to leave out, comma-separated: naive, floor, "
                   "feedback (the full job); the tonghop --no-feedback runs always run")
    p.add_argument("--baseline", type=Path, default=None,
                   help="also time tonghop --no-feedback from the code in this folder (e.g. `git archive "
                        "<commit> | tar -x -C DIR`), on the same inbox, alternating with this tree's runs")
    p.add_argument("--consolidate-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for tonghop consolidate (repeatable), e.g. "
                        "--consolidate-arg=--no-store")
    args = p.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        p.error("--n and --repeat must be at least 1")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - {"naive", "floor", "feedback"}:
        p.error(f"--skip: unknown {sorted(skip - {'naive', 'floor', 'feedback'})}")
    if args.baseline is not None and not (args.baseline / "pipeline" / "__init__.py").is_file():
        p.error(f"--baseline: {args.baseline} holds no pipeline/__init__.py")
    cache = args.cache.resolve()
    info = prepare(args.n, cache, args.gen_jobs)
    if args.generate_only:
        _say(f"Inbox ready: {info['inbox']} ({info['files']} files)")
        return 0
    inbox, units_csv = Path(info["inbox"]), Path(info["units_csv"])
    files = list_files(inbox)
    definition = load_definition()
    sheets = [s.name for s in definition.sheets] + [META_SHEET]
    naive_repeat = args.naive_repeat or (args.repeat if len(files) <= NAIVE_FULL_REPEAT_MAX else 1)
    warm(files)
    args.load_before = _load()
    out = Path(info["folder"]) / "out"
    full, nofb, naive_runs, floor_runs, base = [], [], [], [], []
    for i in range(args.repeat):
        _say(f"run {i + 1}/{args.repeat}:", end="")
        extra = tuple(args.consolidate_arg)
        if "floor" not in skip:
            _say(" floor,", end="")
            floor_runs.append(floor(files, sheets))
        if i < naive_repeat and "naive" not in skip:
            _say(" naive,", end="")
            naive_runs.append({k: round(v, 4) for k, v in naive(files).items()})
        if args.baseline is not None:
            _say(" baseline --no-feedback,", end="")
            base.append(run_tonghop(inbox, units_csv, out, feedback=False, jobs=args.jobs,
                                    root=args.baseline.resolve(), extra=extra))
        _say(" tonghop --no-feedback", end="")
        nofb.append(run_tonghop(inbox, units_csv, out, feedback=False, jobs=args.jobs, extra=extra))
        if "feedback" not in skip:
            _say(", tonghop", end="")
            full.append(run_tonghop(inbox, units_csv, out, feedback=True, jobs=args.jobs, extra=extra))
        _say(f" (job {nofb[-1]['job_seconds']:.1f} s without feedback)")
    shutil.rmtree(out, ignore_errors=True)
    result = summarise(info, len(files), full, nofb, naive_runs, floor_runs, args)
    if base:
        result["baseline"] = {"code": str(args.baseline), "stages_no_feedback": _median_stages(base),
                              "job_seconds_no_feedback": round(_median([r["job_seconds"] for r in base]), 3),
                              "runs": base}
    print(table(result))
    received = result["counts"].get("units_received", 0)
    if received < 0.95 * info["units_sending"]:
        print(f"\nWARNING: tonghop received only {received} of the {info['units_sending']} units that sent a "
              "file: files failed to read, so these timings do not measure a normal run (see tonghop.log).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"\nResults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
