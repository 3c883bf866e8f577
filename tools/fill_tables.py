#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
"""Rewrites the tables of docs/simulations.md from docs/simulations/*.csv.

Each table sits between '<!-- table: NAME -->' and '<!-- end -->'; NAME is a
CSV file in docs/simulations/ (without .csv). Called by tools/simulations.sh.
"""
import csv
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
doc = root / "docs" / "simulations.md"
data = root / "docs" / "simulations"


def table(name: str) -> str:
    rows = list(csv.reader(open(data / f"{name}.csv")))
    head, body = rows[0], rows[1:]
    if name.startswith("overload"):  # too long for a page: every 5 s, the policies side by side
        policies = sorted({r[0] for r in body}, key=[r[0] for r in body].index)
        times = [t for t in sorted({float(r[1]) for r in body}) if t % 5 == 0]
        good = {(r[0], float(r[1])): r[4] for r in body}
        offered = {float(r[1]): r[2] for r in body if r[0] == policies[0]}
        head = ["t (s)", "offered/s"] + [f"{p} goodput/s" for p in policies]
        body = [[f"{t:.0f}", offered[t]] + [good[(p, t)] for p in policies] for t in times]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


text = doc.read_text()
text = re.sub(r"(<!-- table: (\S+) -->\n).*?(<!-- end -->)",
              lambda m: m.group(1) + table(m.group(2)) + "\n" + m.group(3), text, flags=re.S)
doc.write_text(text)
print(f"updated {doc}", file=sys.stderr)
