#!/usr/bin/env python
"""What hostile files cost a run: the files of issue 13, judged one at a time and among good ones.

    python bench/hostile.py [--good 200] [--copies 3] [--out bench/hostile]

1. Writes the crafted files of issue 13 into <out>/crafted/, each built from a valid submission of
   the current template (never timed): text amplification (1,000,000 cells naming one 32,000-character
   shared string, 2 MB; one with 980,000 within the limits, one with 200,000), far cells hidden from
   patterns (a second r, a ">" in another attribute, a non-ASCII prefix), an ODS repeat count
   "+10000", 12 sheets of 1,000,000 empty cells, 7 sheets of 1,000,000 valued cells within the
   limits, a DOCTYPE entity bomb; and 980,000 numbers within the limits, which is read.
2. Runs `tonghop check` on each under `/usr/bin/time -v` (wall time; maximum RSS of the largest
   process) while sampling the RSS and PSS of the whole process tree.
3. Runs `tonghop consolidate --no-feedback` on an inbox of `--good` good files (taken from the
   bench inbox, bench/cache/n1000, when there is one, else rendered), then on the same inbox with
   `--copies` copies of every crafted file: wall time and peak memory of the process tree, both.
Prints a table and writes <out>/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "samples"):  # the pipeline of this tree; the sample generator
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

PERIOD = "2020-H1"
MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _col(n: int) -> str:
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _submission(code: str = "07093") -> bytes:
    from sample_inbox import plausible

    from pipeline.definition import load_definition
    from pipeline.units import load_units
    from pipeline.writers.template import render_workbook

    unit = load_units().set_index("unit_code").loc[code].to_dict() | {"unit_code": code}
    buf = io.BytesIO()
    render_workbook(load_definition(), buf, period=PERIOD, unit=unit, values=plausible(code))
    return buf.getvalue()


def _variant(base: bytes, path: Path, change) -> Path:
    with zipfile.ZipFile(io.BytesIO(base)) as zin:
        members = {i.filename: zin.read(i) for i in zin.infolist()}
    change(members)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    return path


def _sheet_of(members: dict, title: str) -> str:
    """The member of the sheet named `title` ("Thông tin chung")."""
    rels = members["xl/_rels/workbook.xml.rels"].decode()
    book = members["xl/workbook.xml"].decode()
    rid = re.search(rf'<sheet name="{re.escape(title)}"[^>]*r:id="([^"]+)"', book).group(1)
    tag = next(t for t in re.findall(r"<Relationship\b[^>]*>", rels) if f'Id="{rid}"' in t)
    return "xl/" + re.search(r'Target="([^"]+)"', tag).group(1)


def _grid(rows: int, cols: int, cell: str, first: int = 101) -> bytes:
    """rows x cols cells from row `first`, `cell` with {ref} for the reference."""
    out = io.StringIO()
    for r in range(first, first + rows):
        out.write(f'<row r="{r}">')
        out.write("".join(cell.format(ref=f"{_col(c)}{r}") for c in range(1, cols + 1)))
        out.write("</row>")
    return out.getvalue().encode()


def craft(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = _submission()
    files: dict[str, Path] = {}

    def amplified(cells: int, first: int = 101):
        def change(members):
            sst = members["xl/sharedStrings.xml"]
            index = sst.count(b"<si>")
            long = b"<si><t>" + b"x" * 32_000 + b"</t></si></sst>"
            members["xl/sharedStrings.xml"] = sst.replace(b"</sst>", long)
            sheet = _sheet_of(members, "Thông tin chung")
            grid = _grid(cells // 200, 200, f'<c r="{{ref}}" t="s"><v>{index}</v></c>', first)
            members[sheet] = members[sheet].replace(b"</sheetData>", grid + b"</sheetData>", 1)
        return change

    def far(spelling: str):
        def change(members):
            sheet = _sheet_of(members, "Thông tin chung")
            row = f'<row r="2500">{spelling}</row></sheetData>'.encode()
            members[sheet] = members[sheet].replace(b"</sheetData>", row, 1)
        return change

    def sheets(count: int, cell: str):
        def change(members):
            grid = _grid(5000, 200, cell, 1)  # 1,000,000 cells, all within the limits
            data = f'<worksheet xmlns="{MAIN_NS}"><sheetData>'.encode() + grid + b"</sheetData></worksheet>"
            for k in range(count):
                members[f"xl/worksheets/extra{k}.xml"] = data
        return change

    def valued_inside(members):
        """980,000 numbers in "Thông tin chung", all within the limits: accepted, and read."""
        sheet = _sheet_of(members, "Thông tin chung")
        grid = _grid(4900, 200, '<c r="{ref}"><v>1</v></c>')
        members[sheet] = members[sheet].replace(b"</sheetData>", grid + b"</sheetData>", 1)

    def bomb(members):
        entities = "".join(f'<!ENTITY {n} "{("&" + p + ";") * 10}">'
                           for p, n in zip("abcdefgh", "bcdefghi", strict=True))
        dtd = '<!DOCTYPE sst [<!ENTITY a "' + "a" * 40 + '">' + entities + "]>"
        sst = members["xl/sharedStrings.xml"].decode()
        head, sep, rest = sst.partition("?>")
        members["xl/sharedStrings.xml"] = (head + sep + dtd + rest.replace("<t>", "<t>&i;", 1)).encode()

    files["amplified-1M"] = _variant(base, folder / "amplified-1M.xlsx", amplified(1_000_000))  # to row 5100
    files["amplified-980k"] = _variant(base, folder / "amplified-980k.xlsx", amplified(980_000))  # within
    files["amplified-200k"] = _variant(base, folder / "amplified-200k.xlsx", amplified(200_000))
    files["far-second-r"] = _variant(base, folder / "far-second-r.xlsx",
                                     far('<c r="A2500" r="XFD2500"><v>1</v></c>'))
    files["far-gt-in-attr"] = _variant(base, folder / "far-gt-in-attr.xlsx",
                                       far('<c s=">" r="XFD2500"><v>1</v></c>'))
    files["far-prefix"] = _variant(base, folder / "far-prefix.xlsx", far(
        f'<ư:c xmlns:ư="{MAIN_NS}" r="XFD2500"><ư:v>1</ư:v></ư:c>'))
    files["valued-980k-read"] = _variant(base, folder / "valued-980k-read.xlsx", valued_inside)  # accepted
    files["empty-12x1M"] = _variant(base, folder / "empty-12x1M.xlsx", sheets(12, '<c r="{ref}"/>'))
    files["valued-7x1M"] = _variant(base, folder / "valued-7x1M.xlsx", sheets(7, '<c r="{ref}"><v>1</v></c>'))
    files["entity-bomb"] = _variant(base, folder / "entity-bomb.xlsx", bomb)
    ods = folder / "ods-plus-repeat.ods"
    with zipfile.ZipFile(ods, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        odf = "urn:oasis:names:tc:opendocument:xmlns"
        z.writestr("META-INF/manifest.xml", f'<manifest:manifest xmlns:manifest="{odf}:manifest:1.0">'
                   '<manifest:file-entry manifest:full-path="/" manifest:media-type="'
                   'application/vnd.oasis.opendocument.spreadsheet"/></manifest:manifest>')
        z.writestr("content.xml", f'<office:document-content xmlns:office="{odf}:office:1.0" '
                   f'xmlns:table="{odf}:table:1.0" xmlns:text="{odf}:text:1.0"><office:body>'
                   '<office:spreadsheet><table:table table:name="A"><table:table-row '
                   'table:number-rows-repeated="+10000"><table:table-cell office:value-type="float" '
                   'office:value="1" table:number-columns-repeated="+10000"><text:p>1</text:p>'
                   "</table:table-cell></table:table-row></table:table></office:spreadsheet></office:body>"
                   "</office:document-content>")
    files["ods-plus-repeat"] = ods
    return files


class Sampler:
    """Peak RSS and PSS summed over a process and its descendants, sampled every 50 ms (PSS now and then:
    reading it walks the page tables)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.rss, self.pss = pid, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        import psutil

        try:
            top = psutil.Process(self.pid)
        except psutil.Error:
            return
        pss_when, pss_at = 0.0, 0
        while not self.stop.is_set():
            procs = [top]
            with contextlib.suppress(psutil.Error):
                procs += top.children(recursive=True)
            rss = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            self.rss = max(self.rss, rss)
            now = time.monotonic()
            if (rss > pss_at * 1.05 and now - pss_when >= 0.5) or now - pss_when >= 3:
                pss = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        m = p.memory_full_info()
                        pss += getattr(m, "pss", m.rss)
                self.pss, pss_at, pss_when = max(self.pss, pss), rss, now
            self.stop.wait(0.05)

    def done(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        return self.rss / 2**20, self.pss / 2**20


def measure(args: list[str], timed: bool = True) -> dict:
    """Run `tonghop <args>` (under /usr/bin/time -v when `timed` and it exists); wall, peak memory."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    verbose = timed and Path("/usr/bin/time").exists()
    if verbose:
        cmd = ["/usr/bin/time", "-v", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    rss, pss = sampler.done()
    result = {"rc": proc.returncode, "wall_s": round(wall, 2), "tree_rss_mb": round(rss),
              "tree_pss_mb": round(pss)}
    if verbose:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        e = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", err)
        result["time_v_max_rss_mb"] = round(int(m.group(1)) / 1024) if m else None
        result["time_v_wall"] = e.group(1) if e else None
    result["rules"] = sorted({i["rule"] for i in json.loads(out)}) if "--json" in args and out.strip() else []
    return result


def good_files(folder: Path, n: int) -> list[Path]:
    cache = ROOT / "bench" / "cache" / "n1000" / "inbox"
    found = sorted(cache.rglob("*.xls*"))[:n] if cache.is_dir() else []
    folder.mkdir(parents=True, exist_ok=True)
    if len(found) >= n:
        out = []
        for p in found:
            dst = folder / p.name
            shutil.copy(p, dst)
            out.append(dst)
        return out
    from sample_inbox import make_samples

    make_samples(folder, PERIOD)
    return sorted(folder.glob("*.xls*"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--good", type=int, default=200, help="good files in the mixed inbox")
    p.add_argument("--copies", type=int, default=3, help="copies of each crafted file in the mixed inbox")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "hostile")
    args = p.parse_args(argv)
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    files = craft(out / "crafted")
    results: dict = {"single": {}, "inbox": {}}
    print(f"{'file':<18} {'size':>9} {'wall s':>7} {'max RSS MB':>10} {'tree PSS MB':>11}  rules")
    for name, path in files.items():
        r = measure(["check", "--json", "--period", PERIOD, str(path)])
        r["size_kb"] = round(path.stat().st_size / 1024)
        results["single"][name] = r
        print(f"{name:<18} {r['size_kb']:>7}KB {r['wall_s']:>7} {r.get('time_v_max_rss_mb') or '-':>10} "
              f"{r['tree_pss_mb']:>11}  {','.join(r['rules'])}")
    inbox = out / "inbox"
    good = good_files(inbox, args.good)
    units = ROOT / "bench" / "cache" / "n1000" / "units.csv"
    extra = ["--units", str(units)] if units.exists() and len(good) >= args.good else []
    common = ["consolidate", "--inbox", str(inbox), "--period", PERIOD, "--quiet", "--no-feedback", *extra]
    results["inbox"]["good_only"] = measure([*common, "--out", str(out / "out-good")], timed=False)
    for path in files.values():
        for k in range(args.copies):
            shutil.copy(path, inbox / f"{k}-{path.name}")
    results["inbox"]["with_crafted"] = measure([*common, "--out", str(out / "out-mixed")], timed=False)
    n_bad = len(files) * args.copies
    for key, r in results["inbox"].items():
        bad = 0 if key == "good_only" else n_bad
        print(f"inbox {key:<13} {len(good)} good + {bad} crafted: wall {r['wall_s']} s, "
              f"tree peak RSS {r['tree_rss_mb']} MB, PSS {r['tree_pss_mb']} MB (exit {r['rc']})")
    text = json.dumps(results, indent=1, ensure_ascii=False) + "\n"
    (out / "results.json").write_text(text, encoding="utf-8")
    print(f"\nResults written to {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
