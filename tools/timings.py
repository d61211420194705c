#!/usr/bin/env python3
"""Where `make test` spent its time: each line's and job's wall time, and the slowest tests.

    python tools/timings.py [--budget MIN] [build/timings.tsv] [build/junit]

Reads what tools/timed.sh recorded (NAME, start, end, exit status per line) and the JUnit XML files every pytest
run of `make test` writes, and prints a table, so every CI log shows the budget and who spends it. Names are
"line", "line / job", ...: each is indented under its parent.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def minutes(seconds):
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def read_timings(path):
    rows = []
    for line in Path(path).read_text().splitlines() if Path(path).exists() else []:
        parts = line.split("\t")
        if len(parts) == 4:
            name, start, end, status = parts
            rows.append((name, float(start), float(end), int(status)))
    return rows


def slowest_tests(junit_dir, count=10):
    found = []
    for xml in sorted(Path(junit_dir).glob("*.xml")) if Path(junit_dir).is_dir() else []:
        try:
            root = ET.parse(xml).getroot()  # noqa: S314 (pytest's own JUnit files, written by this run)
        except ET.ParseError:
            continue
        for case in root.iter("testcase"):
            name = "{}::{}".format(case.get("classname", ""), case.get("name", ""))
            found.append((float(case.get("time") or 0), xml.stem, name))
    return sorted(found, reverse=True)[:count]


def table(rows, tests, budget_min):
    lines = [f"== Where the time went (budget {budget_min} min)"]
    if rows:
        began = min(r[1] for r in rows)
        ended = max(r[2] for r in rows)
        width = max(len(r[0].split(" / ")[-1]) + 2 * r[0].count(" / ") for r in rows)
        for name, start, end, status in sorted(rows, key=lambda r: (r[1], r[0].count(" / "))):
            depth = name.count(" / ")
            label = "  " * depth + name.split(" / ")[-1]
            mark = "" if status == 0 else f"  FAILED ({status})"
            lines.append(f"  {label:<{width}}  {minutes(end - start):>9}  from +{minutes(start - began)}{mark}")
        total = ended - began
        verdict = "within" if total <= budget_min * 60 else "OVER"
        lines.append(f"  {'total':<{width}}  {minutes(total):>9}  ({verdict} the {budget_min}-minute budget)")
    if tests:
        lines += ["", f"== The {len(tests)} slowest tests"]
        lines += [f"  {seconds:7.1f}s  {run}  {name}" for seconds, run, name in tests]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timings", nargs="?", default="build/timings.tsv")
    parser.add_argument("junit", nargs="?", default="build/junit")
    parser.add_argument("--budget", type=int, default=40)
    args = parser.parse_args(argv)
    print("\n".join(table(read_timings(args.timings), slowest_tests(args.junit), args.budget)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
