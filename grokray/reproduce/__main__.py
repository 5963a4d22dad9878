"""``python -m grokray.reproduce``: run the reproduction rows, write REPORT.md, report.json, PNGs."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from grokray.reproduce import load_rows
from grokray.reproduce.core import Context, Row


def report_markdown(rows: list[Row], quick: bool, total_s: float) -> str:
    lines = [
        "# grokray: reproductions of the five papers' headlines",
        "",
        f"`make reproduce{' ARGS=--quick' if quick else ''}` on {platform.node()} "
        f"({platform.processor() or platform.machine()}), {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{total_s / 60:.1f} min in all."
        + (
            " **Smoke profile (--quick): budgets too small for the effects; PASS not expected.**"
            if quick
            else ""
        ),
        "",
        "| row | paper | figure / table | reference | grokray measured | tolerance | result | scaled "
        "| time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        result = "PASS" if r.passed else "FAIL"
        lines.append(
            f"| {r.key} | {r.paper} | {r.figure} | {r.reference} | {r.measured} | {r.tolerance} | "
            f"{result} | {r.scaled or 'paper setting'} | {r.seconds:.0f} s |"
        )
    lines.append("")
    for r in rows:
        lines += [f"## {r.key}: {r.claim}", ""]
        if r.plot:
            lines += [f"![{r.key}]({r.plot})", ""]
        if r.scaled:
            lines += [f"Scaled: {r.scaled}", ""]
        if r.command:
            lines += ["By hand:", "", f"    {r.command}", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grokray.reproduce", description=__doc__)
    parser.add_argument("--rows", default="", help="comma-separated row keys (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke profile (seconds a row)")
    parser.add_argument("--out", default="results/reproduce", help="output folder")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    args = parser.parse_args(argv)
    registry = load_rows()
    if args.list:
        for key in registry:
            print(key)
        return 0
    keys = [k.strip() for k in args.rows.split(",") if k.strip()] or list(registry)
    unknown = [k for k in keys if k not in registry]
    if unknown:
        print(f"--rows: unknown {', '.join(unknown)}; allowed: {', '.join(registry)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    started = time.perf_counter()
    for n, key in enumerate(keys, 1):
        print(f"[{n}/{len(keys)}] {key} ...", flush=True)
        ctx = Context(out=out, quick=args.quick, progress=lambda line: print(line, flush=True))
        t0 = time.perf_counter()
        try:
            result = registry[key](ctx)
        except Exception as err:  # a broken row is a FAIL row, not a lost report
            traceback.print_exc()
            result = Row(key, "?", "?", "row raised", "", f"error: {type(err).__name__}: {err}", "", False)
        result.seconds = time.perf_counter() - t0
        rows.append(result)
        verdict = "PASS" if result.passed else "FAIL"
        print(
            f"[{n}/{len(keys)}] {key}: {verdict}  measured {result.measured}  (reference "
            f"{result.reference}; {result.seconds:.0f} s)",
            flush=True,
        )
        # written after every row: an interrupted suite keeps what it measured
        total = time.perf_counter() - started
        (out / "report.json").write_text(
            json.dumps(
                {"quick": args.quick, "seconds": total, "rows": [r.to_dict() for r in rows]},
                indent=2,
                default=str,
            )
        )
        (out / "REPORT.md").write_text(report_markdown(rows, args.quick, total))
    passed = sum(r.passed for r in rows)
    print(f"{passed} passed, {len(rows) - passed} failed  ({out / 'REPORT.md'})")
    return 0 if args.quick or passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
