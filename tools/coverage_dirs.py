#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
"""Line and branch coverage per directory, from gcovr's --json-summary
(`make coverage` writes build/coverage/directories.txt with it).
  tools/coverage_dirs.py build/coverage/summary.json
"""
import json
import os
import sys


def main():
    with open(sys.argv[1]) as f:
        data = json.load(f)
    dirs = {}
    for entry in data["files"]:
        d = os.path.dirname(entry["filename"])
        t = dirs.setdefault(d, [0, 0, 0, 0])
        t[0] += entry["line_covered"]
        t[1] += entry["line_total"]
        t[2] += entry["branch_covered"]
        t[3] += entry["branch_total"]
    pct = lambda a, b: f"{100.0 * a / b:5.1f} %" if b else "    —  "
    print(f"{'directory':32} {'lines':>20} {'branches':>20}")
    total = [0, 0, 0, 0]
    for d in sorted(dirs):
        t = dirs[d]
        total = [x + y for x, y in zip(total, t)]
        print(f"{d:32} {pct(t[0], t[1])} {t[0]:>5}/{t[1]:<6} {pct(t[2], t[3])} {t[2]:>5}/{t[3]:<6}")
    print(f"{'all':32} {pct(total[0], total[1])} {total[0]:>5}/{total[1]:<6} {pct(total[2], total[3])} {total[2]:>5}/{total[3]:<6}")


if __name__ == "__main__":
    main()
