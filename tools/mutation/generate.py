#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
"""Mutants made mechanically from the source, for `make mutate-generated`.

Writes a list in tests/mutants.txt's format (tools/mutate.sh runs it): one
mutant per operator or statement, a seeded random sample of them.

  tools/mutation/generate.py [--sample N] [--seed S] [--list] > build/mutants-generated.txt

Kinds, each on code only (comments, string and character literals masked;
preprocessor lines, asserts and static_asserts skipped):
  rel       < <= > >= == != swapped (< with <=, > with >=, == with !=)
  arith     + with -, * with / (not on lines with a string literal: concatenation)
  logic     && with ||
  not       !x with x
  bool      true with false
  const     an integer literal n with n + 1 (0 with 1)
  delete    a statement that is only a call (its result unused) removed
  return    return x; with return {};
Operators are matched with a space on each side (the project's format), which
keeps template brackets, pointers and unary minus out. A mutant's `find` is its
line, grown by the next lines until it is unique in the file (mutate.sh replaces
the first occurrence). Mutants whose id is in tests/mutants-equivalent.txt
carry its reason and are left out of the score.
"""
import argparse
import hashlib
import os
import random
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIRS = ["include/backoff", "src", "tools/backoff"]


def tests_for(path):
    """The test executables that exercise a file (tools/mutate.sh runs each)."""
    if path.startswith("tools/backoff/"):
        return "backoff_cli_tests"
    if "/curl/" in path or path.startswith("src/curl"):
        # Segmented downloads and mirrors are tested through the command too.
        return "backoff_http_tests backoff_cli_tests"
    return "backoff_tests"


def mask(line, in_block, literal=" "):
    """The line with comments blanked and string and char literals filled with `literal` (same
    length); and what is still open at its end: False (nothing), True (a /* comment) or the
    closing text of a raw string literal, e.g. ')lua"', whose lines are literal, not code."""
    out = []
    i = 0
    n = len(line)
    while i < n:
        if isinstance(in_block, str):  # inside a raw string opened on an earlier line
            end = line.find(in_block, i)
            if end < 0:
                out.append(literal * (n - i))
                return "".join(out), in_block
            out.append(literal * (end + len(in_block) - i))
            i = end + len(in_block)
            in_block = False
            continue
        if in_block:
            end = line.find("*/", i)
            if end < 0:
                out.append(" " * (n - i))
                return "".join(out), True
            out.append(" " * (end + 2 - i))
            i = end + 2
            in_block = False
            continue
        c = line[i]
        if line.startswith("//", i):
            out.append(" " * (n - i))
            break
        if line.startswith("/*", i):
            in_block = True
            continue
        if line.startswith('R"', i):  # raw string: R"delim( ... )delim"
            m = re.match(r'R"([^(]*)\(', line[i:])
            if m:
                close = ")" + m.group(1) + '"'
                end = line.find(close, i + m.end())
                if end < 0:
                    out.append(literal * (n - i))
                    return "".join(out), close
                out.append(literal * (end + len(close) - i))
                i = end + len(close)
                continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if line[j] == "\\" else 1
            out.append(literal * (min(j + 1, n) - i))
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out), in_block


SWAPS = [
    ("rel", " <= ", " < "), ("rel", " < ", " <= "), ("rel", " >= ", " > "), ("rel", " > ", " >= "),
    ("rel", " == ", " != "), ("rel", " != ", " == "),
    ("arith", " + ", " - "), ("arith", " - ", " + "), ("arith", " * ", " / "), ("arith", " / ", " * "),
    ("logic", " && ", " || "), ("logic", " || ", " && "),
]
CALL_STATEMENT = re.compile(r"^\s*(?:[A-Za-z_][\w:]*(?:\.|->))*[A-Za-z_][\w:]*\s*\(.*\);\s*$")
RETURN_VALUE = re.compile(r"^(\s*)return\s+([^;]+);\s*$")
SKIP_LINE = re.compile(r"^\s*#|\bassert\s*\(|\bstatic_assert\b|\bthrow\b|\btemplate\s*<|\boperator\s*\S+\s*\(")


def mutants_of(path, lines):
    in_block = False
    for no, raw in enumerate(lines, 1):
        code, in_block_after = mask(raw, in_block)
        in_block = in_block_after
        if not code.strip() or SKIP_LINE.search(code):
            continue
        for kind, a, b in SWAPS:
            start = 0
            while True:
                at = code.find(a, start)
                if at < 0:
                    break
                start = at + 1
                # ">" of "->" or ">>": not a comparison.
                if a.strip() in ("<", ">") and (code[at - 1: at] in "<>-" or code[at + len(a): at + len(a) + 1] in "<>="):
                    continue
                # + on a line with a string literal is most likely concatenation: - would not compile.
                if kind == "arith" and '"' in raw:
                    continue
                yield kind, no, raw[:at] + b + raw[at + len(a):], at, a, b
        for m in re.finditer(r"(?<![\w.])(true|false)(?![\w])", code):
            other = "false" if m.group(1) == "true" else "true"
            yield "bool", no, raw[:m.start()] + other + raw[m.end():], m.start(), m.group(1), other
        for m in re.finditer(r"!(?=[A-Za-z_(])", code):
            yield "not", no, raw[:m.start()] + raw[m.end():], m.start(), "!", ""
        for m in re.finditer(r"(?<![\w.'])(\d+)(?![\w.'])", code):
            n = int(m.group(1))
            if n > 10**12:
                continue
            yield "const", no, raw[:m.start()] + str(n + 1) + raw[m.end():], m.start(), m.group(1), str(n + 1)
        if CALL_STATEMENT.match(code) and not re.match(r"^\s*(return|if|for|while|switch|case|else)\b", code) \
                and "=" not in code.replace("==", "").replace("!=", "").replace("<=", "").replace(">=", ""):
            yield "delete", no, "", 0, "", ""
        r = RETURN_VALUE.match(code)
        if r and r.group(2).strip() not in ("{}", "true", "false") and not r.group(2).strip().startswith("{"):
            yield "return", no, r.group(1) + "return {};", 0, "", ""


def unique_find(lines, no, text):
    """The text of line `no` grown by the lines after it until it occurs once in the file; with its span."""
    whole = "\n".join(lines)
    end = no
    while True:
        find = "\n".join(lines[no - 1:end])
        if whole.count(find) == 1 or end >= len(lines):
            return find, end
        end += 1


def load_equivalent():
    """tests/mutants-equivalent.txt: id -> why."""
    equivalent = {}
    eq_path = os.path.join(ROOT, "tests", "mutants-equivalent.txt")
    if os.path.exists(eq_path):
        for line in open(eq_path, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#") and ":" in line:
                key, why = line.split(":", 1)
                equivalent[key.strip()] = why.strip()
    return equivalent


def everything():
    """Every mutant of the tree: (path, kind, line, mutated line, column, old text, new text), sorted."""
    found = []
    for d in DIRS:
        for base, _, files in os.walk(os.path.join(ROOT, d)):
            for f in sorted(files):
                if not f.endswith((".hpp", ".cpp")):
                    continue
                path = os.path.relpath(os.path.join(base, f), ROOT)
                lines = open(os.path.join(ROOT, path), encoding="utf-8").read().split("\n")
                for m in mutants_of(path, lines):
                    found.append((path,) + m)
    found.sort()
    return found


def sample(count, seed):
    """A seeded sample of `count` mutants (0: all), each a dict: id, file, kind, line, col, old, new,
    find and replace (tools/mutate.sh's text), tests, equivalent (a reason or None), shown."""
    every = everything()
    chosen = every if count <= 0 else random.Random(seed).sample(every, min(count, len(every)))
    chosen.sort()
    equivalent = load_equivalent()
    cache = {}
    out = []
    for path, kind, no, mutated, col, old, new in chosen:
        lines = cache.setdefault(path, open(os.path.join(ROOT, path), encoding="utf-8").read().split("\n"))
        find, end = unique_find(lines, no, lines[no - 1])
        replace = "\n".join([mutated] + lines[no:end]) if mutated else "\n".join(lines[no:end])
        ident = "g-" + kind + "-" + hashlib.sha1(f"{path}\0{lines[no - 1]}\0{mutated}".encode()).hexdigest()[:8]
        # The same line twice in a file makes the same mutant twice: the later
        # ones get their rank (the first keeps the plain id, as before).
        rank = sum(1 for k in range(no - 1) if lines[k] == lines[no - 1])
        if rank:
            ident += f"-{rank + 1}"
        shown = mutated.strip() if mutated else "(deleted) " + lines[no - 1].strip()
        out.append(dict(id=ident, file=path, kind=kind, line=no, col=col, old=old, new=new, find=find,
                        replace=replace, tests=tests_for(path), equivalent=equivalent.get(ident),
                        shown=f"{path}:{no} {shown[:160]}"))
    return out, len(every)


def write_list(mutants, out, header=""):
    """Mutants in tests/mutants.txt's format, for tools/mutate.sh."""
    if header:
        print(header, file=out)
    for m in mutants:
        print(file=out)
        print(f"id: {m['id']}", file=out)
        print(f"file: {m['file']}", file=out)
        print("find: " + m["find"].replace("\n", "<NL>"), file=out)
        print("replace: " + m["replace"].replace("\n", "<NL>"), file=out)
        print(f"tests: {m['tests']}", file=out)
        if m["equivalent"]:
            print(f"equivalent: {m['equivalent']}", file=out)
        print(f"breaks: {m['shown']}", file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=200, help="how many mutants (0: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--list", action="store_true", help="count the mutants by kind and directory, write none")
    args = ap.parse_args()
    if args.list:
        counts = {}
        every = everything()
        for path, kind, *_ in every:
            key = (path.split("/")[0] + "/" + path.split("/")[1], kind)
            counts[key] = counts.get(key, 0) + 1
        for (d, kind), n in sorted(counts.items()):
            print(f"{d:24} {kind:8} {n}")
        print(f"total {len(every)}")
        return
    chosen, total = sample(args.sample, args.seed)
    write_list(chosen, sys.stdout, f"# generated by tools/mutation/generate.py --sample {args.sample} "
               f"--seed {args.seed}: {len(chosen)} of {total} mutants")


if __name__ == "__main__":
    sys.exit(main())
