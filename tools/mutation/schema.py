#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
"""make mutate-generated: a seeded sample of generated mutants, run as mutant schemata.

tools/mutate.sh builds and tests one mutant at a time: about two minutes each
here, so 200 would take hours. This runner builds every sampled mutant into one
scratch build, each behind a switch (switch.hpp: `backoff_mutant_on<ID>()`),
then:
  1. runs the whole test suite once with no mutant on, recording which tests
     reach which mutant (BACKOFF_MUTANT_TRACE);
  2. for each mutant, runs only the tests that reach it, with it on
     (BACKOFF_MUTANT=ID), stopping at the first failure;
  3. re-runs a failing test with the mutant off: a test that fails either way
     is flaky and the mutant is left out of the score;
  4. builds the classic way (tools/mutate.sh) each mutant the switch cannot
     carry: one in a constant expression, one whose two sides do not compile
     as one expression, one overlapping another on its line, or one whose
     operands span lines.
A mutant no test reaches survives without a run: no test executes its line.

  tools/mutation/schema.py [--sample N] [--seed S] [--jobs J] [--classic N] [--only REGEX] [--work DIR]
  tools/mutation/schema.py --ids tools/mutation/samples/seed1.txt   # the same mutants again

Writes build/mutate-schema/table.md (every mutant, its file:line and result)
and prints the survivors and the score.
"""
import argparse
import collections
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import generate  # noqa: E402

WORK = os.path.join(ROOT, "build", "mutate-schema")
SRC = BUILD = ""


def set_work(work):
    global WORK, SRC, BUILD
    WORK = os.path.abspath(work)
    SRC = os.path.join(WORK, "src")
    BUILD = os.path.join(WORK, "build")
EXECUTABLES = ("backoff_tests", "backoff_http_tests", "backoff_cli_tests")

# Binary operators and their precedence (lower binds tighter), as written in
# the project's format: with a space on each side.
PRECEDENCE = {
    ".*": 4, "->*": 4, "*": 5, "/": 5, "%": 5, "+": 6, "-": 6, "<<": 7, ">>": 7, "<=>": 8,
    "<": 9, "<=": 9, ">": 9, ">=": 9, "==": 10, "!=": 10, "&": 11, "^": 12, "|": 13, "&&": 14, "||": 15,
    "=": 16, "+=": 16, "-=": 16, "*=": 16, "/=": 16, "%=": 16, "<<=": 16, ">>=": 16, "&=": 16, "|=": 16,
    "^=": 16, "?": 16, ":": 16, ",": 17, ";": 18,
}
SPACED_ONLY = {"*", "&", "+", "-", "<", ">", "<<", ">>"}  # unspaced: unary, declarator or template bracket
STOP_WORDS = {"return", "co_return", "co_yield", "co_await", "throw", "case", "else", "do", "goto", "new", "delete"}
PUNCT = sorted(["<=>", "<<=", ">>=", "->*", "...", "::", "->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=",
                "&&", "||", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", ".*"], key=len, reverse=True)
OPEN, CLOSE = {"(": ")", "[": "]", "{": "}", "<t": ">t"}, {")": "(", "]": "[", "}": "{", ">t": "<t"}


class Unscannable(Exception):
    """A mutant whose operands the scanner cannot delimit on its line."""


def tokens(code):
    """(text, start, end, kind) of a masked line; kind: word, op (binary), open, close, punct."""
    out = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c.isspace():
            i += 1
            continue
        m = re.match(r"[A-Za-z_0-9][\w']*(?:\.\d[\w']*)?", code[i:])
        if m:
            out.append([m.group(0), i, i + m.end(), "word"])
            i += m.end()
            continue
        p = next((p for p in PUNCT if code.startswith(p, i)), c)
        spaced = (i == 0 or code[i - 1].isspace()) and (i + len(p) >= n or code[i + len(p)].isspace())
        if p == ">>" and not spaced:  # two template brackets closing
            out += [[">", i, i + 1, "close"], [">", i + 1, i + 2, "close"]]
            i += 2
            continue
        if p in "([{":
            kind = "open"
        elif p in ")]}":
            kind = "close"
        elif p in ("<", ">") and not spaced:
            kind = "open" if p == "<" else "close"
        elif p in PRECEDENCE and (spaced or p not in SPACED_ONLY):
            kind = "op"
        else:
            kind = "punct"
        out.append([p, i, i + len(p), kind])
        i += len(p)
    return out


def key(t):
    return "<t" if t[0] == "<" else ">t" if t[0] == ">" else t[0]


def walk_left(toks, k, prec):
    """Index of the first token of the left operand of the operator at k."""
    j = k - 1
    while j >= 0:
        t = toks[j]
        if t[3] == "close":
            depth = 0
            while j >= 0:
                if toks[j][3] == "close":
                    depth += 1
                elif toks[j][3] == "open":
                    depth -= 1
                    if depth == 0:
                        if OPEN[key(toks[j])] != key(t):
                            raise Unscannable("brackets do not match")
                        break
                j -= 1
            if j < 0:
                raise Unscannable("brackets open on an earlier line")
        elif t[3] == "open":
            return j + 1
        elif t[3] == "op" and PRECEDENCE[t[0]] > prec:
            return j + 1
        elif t[0] in STOP_WORDS:
            return j + 1
        j -= 1
    return 0


def group_end(toks, j):
    """Index of the bracket that closes the one opened at toks[j]."""
    depth = 0
    for i in range(j, len(toks)):
        if toks[i][3] == "open":
            depth += 1
        elif toks[i][3] == "close":
            depth -= 1
            if depth == 0:
                if CLOSE[key(toks[i])] != key(toks[j]):
                    raise Unscannable("brackets do not match")
                return i
    raise Unscannable("brackets close on a later line")


def walk_right(toks, k, prec):
    """Index one past the last token of the right operand of the operator at k."""
    j = k + 1
    while j < len(toks):
        t = toks[j]
        if t[3] == "open":
            j = group_end(toks, j)
        elif t[3] == "close":
            return j
        elif t[3] == "op" and PRECEDENCE[t[0]] >= prec:
            return j
        j += 1
    return j


def neighbour(lines, no, step):
    """The tokens of the nearest code line before (step -1) or after (step 1) line `no`."""
    i = no - 1 + step
    while 0 <= i < len(lines):
        code, _ = generate.mask(lines[i], False, "S")
        if code.strip() and not code.lstrip().startswith("#"):
            return tokens(code)
        i += step
    return []


def operand_span(lines, no, col, op, loosest=None):
    """Columns [start, end) of `LEFT op RIGHT` around the operator at `col` of line `no`; with
    `loosest`, the operands reach out to operators as loose as that one (a whole && / || chain)."""
    code, _ = generate.mask(lines[no - 1], False, "S")
    toks = tokens(code)
    k = next((i for i, t in enumerate(toks) if t[1] == col + 1 and t[0] == op.strip()), None)
    if k is None or toks[k][3] != "op":
        raise Unscannable("not a binary operator here")
    prec = PRECEDENCE[(loosest or op).strip()]
    first, last = walk_left(toks, k, prec), walk_right(toks, k, prec)
    if first == k or last == k + 1:
        raise Unscannable("an operand is on another line")
    if first == 0:  # the expression may begin on the line before
        prev = neighbour(lines, no, -1)
        if prev and not (prev[-1][0] in (";", "{", "}", "(", "[", ",", "?", ":", "return")
                         or (prev[-1][3] == "op" and PRECEDENCE[prev[-1][0]] > prec)):
            raise Unscannable("the left operand may begin on the line before")
    if last == len(toks):  # ... or go on after this one
        nxt = neighbour(lines, no, 1)
        if nxt and not (nxt[0][0] in (";", ")", "]", "}", ",", "?", ":", "{")
                        or (nxt[0][3] == "op" and PRECEDENCE[nxt[0][0]] >= prec)):
            raise Unscannable("the right operand may go on after this line")
    return toks[first][1], toks[last - 1][2]


def unary_span(lines, no, col):
    """Columns [start, end) of `!OPERAND` at `col`: an identifier chain or a parenthesized group."""
    code, _ = generate.mask(lines[no - 1], False, "S")
    toks = tokens(code)
    k = next((i for i, t in enumerate(toks) if t[1] == col and t[0] == "!"), None)
    if k is None:
        raise Unscannable("no ! here")
    j = k + 1
    if j < len(toks) and toks[j][0] == "(":
        j = group_end(toks, j) + 1
    elif j < len(toks) and toks[j][3] == "word":
        j += 1
    else:
        raise Unscannable("no operand after !")
    while j < len(toks):
        t = toks[j]
        if t[0] in ("::", ".", "->") and j + 1 < len(toks) and toks[j + 1][3] == "word":
            j += 2
        elif t[0] in ("(", "[") or (t[0] == "<" and t[3] == "open"):
            j = group_end(toks, j) + 1
        else:
            break
    return toks[k][1], toks[j - 1][2]


def schema_edit(lines, m, number):
    """(start, end, text): the columns of line m['line'] that mutant `number` replaces, and with what."""
    line = lines[m["line"] - 1]
    on = f"backoff_mutant_on<{number}>()"
    kind, col = m["kind"], m["col"]
    if kind in ("rel", "arith", "logic"):
        start = None
        if kind == "logic":
            # The whole && / || chain, so that the mutated text parses as the
            # plain mutant does (a && b && c → a || b && c, that is a || (b && c)).
            # A chain that runs onto other lines keeps the operator's own operands.
            try:
                start, end = operand_span(lines, m["line"], col, m["old"], "||")
            except Unscannable:
                start = None
        if start is None:
            start, end = operand_span(lines, m["line"], col, m["old"])
        left, right = line[start:col], line[col + len(m["old"]):end]
        return start, end, f"({on} ? ({left}{m['new']}{right}) : ({line[start:end]}))"
    if kind in ("bool", "const"):
        end = col + len(m["old"])
        return col, end, f"({on} ? {m['new']} : {m['old']})"
    if kind == "not":
        start, end = unary_span(lines, m["line"], col)
        operand = line[start + 1:end]
        return start, end, f"({on} ? static_cast<bool>({operand}) : !{operand})"
    code, _ = generate.mask(line, False, "S")
    start = len(code) - len(code.lstrip())
    end = code.rstrip().rfind(";") + 1
    if end <= start:
        raise Unscannable("no statement on the line")
    if kind == "delete":
        return start, end, f"if (!{on}) {line[start:end]}"
    if kind == "return":
        return start, end, f"{{ if ({on}) return {{}}; {line[start:end]} }}"
    raise Unscannable("unknown kind " + kind)


def sources():
    """Every file of the tree that the build reads (not build/, not .git)."""
    for base, dirs, files in os.walk(ROOT):
        rel = os.path.relpath(base, ROOT)
        if rel == ".":
            dirs[:] = [d for d in dirs if d not in ("build", ".git")]
        for f in files:
            yield os.path.normpath(os.path.join(rel, f))


def write_tree(edits):
    """The scratch tree: the sources, with the switched mutants written into their lines. Only files
    whose content changes are written, so the build recompiles only what a new sample touches."""
    wanted = set()
    for rel in sources():
        wanted.add(rel)
        data = open(os.path.join(ROOT, rel), "rb").read()
        if rel in edits:
            lines = data.decode().split("\n")
            for no, changes in edits[rel].items():
                line = lines[no - 1]
                for start, end, text in sorted(changes, reverse=True):
                    line = line[:start] + text + line[end:]
                lines[no - 1] = line
            data = "\n".join(lines).encode()
        dest = os.path.join(SRC, rel)
        if os.path.exists(dest) and open(dest, "rb").read() == data:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)
        shutil.copymode(os.path.join(ROOT, rel), dest)


def log(*what):
    print(time.strftime("%H:%M:%S"), *what, flush=True)


def build(targets):
    """Builds with -k 0; for every failed command, (the command, the compiler's output)."""
    r = subprocess.run(["cmake", "--build", BUILD, "--target", *targets, "--", "-k", "0"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        return None
    blocks, current = [], None
    for line in r.stdout.splitlines():
        if line.startswith("FAILED:"):
            current = [None, []]
            blocks.append(current)
        elif re.match(r"^\[\d+/\d+\]", line) or line.startswith("ninja:"):
            current = None
        elif current is not None:
            if current[0] is None:
                current[0] = line
            else:
                current[1].append(line)
    return [(command, "\n".join(out)) for command, out in blocks] or [(None, r.stdout[-4000:])]


def blame(output, placed):
    """The switched mutants a failed build names: by Id in a constant expression, or by a line."""
    numbers = {int(n) for n in re.findall(r"backoff_mutant_on\(\) \[with unsigned int Id = (\d+)\]", output)}
    where = collections.defaultdict(set)
    for number, m in placed.items():
        where[(m["file"], m["line"])].add(number)
    files = set()
    for path, no in re.findall(r"^(?:In file included from |\s+from )?([^\s:]+):(\d+):", output, re.M):
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(SRC)) if path.startswith("/") else \
            os.path.relpath(os.path.realpath(os.path.join(BUILD, path)), os.path.realpath(SRC))
        numbers |= where.get((rel, int(no)), set())
        files.add(rel)
    if not numbers:  # no line of a mutant is named: every mutant of the files named goes
        numbers = {n for n, m in placed.items() if m["file"] in files}
    return numbers


def compiles_classic(m, command):
    """Whether the file that failed behind a switch compiles with the mutant written plainly (the
    classic way), checked with the failed command itself and -fsyntax-only."""
    path = os.path.join(SRC, m["file"])
    kept = open(path, encoding="utf-8").read()
    whole = open(os.path.join(ROOT, m["file"]), encoding="utf-8").read()
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(whole.replace(m["find"], m["replace"], 1))
        r = subprocess.run(command + " -fsyntax-only", shell=True, cwd=BUILD, capture_output=True)
        return r.returncode == 0
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(kept)


def junit_times(path):
    times = {}
    if os.path.exists(path):
        for case in ET.parse(path).getroot().iter("testcase"):
            times[case.get("name")] = float(case.get("time") or 0)
    return times


def run_test(exe, name, mutant, timeout):
    """Runs one test in its own process, with mutant `mutant` on (0: none): 'pass', 'fail' or 'hung'."""
    env = dict(os.environ)
    env.pop("BACKOFF_MUTANT_TRACE", None)
    if mutant:
        env["BACKOFF_MUTANT"] = str(mutant)
    # Each test in a session of its own: a mutant that signals its process
    # group (kill(0, ...)) must not reach this runner, and a test that hangs
    # goes with everything it started.
    p = subprocess.Popen([os.path.join(BUILD, "bin", exe), "--gtest_brief=1", "--gtest_filter=" + name],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         cwd=os.path.join(BUILD, "tests"), start_new_session=True)
    try:
        code = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    try:
        os.killpg(p.pid, signal.SIGKILL)  # what the test left behind, or the hung test itself
    except ProcessLookupError:
        pass
    if code is None:
        p.wait()
        return "hung"
    return "pass" if code == 0 else "fail"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    # Most tests wait (on servers, timers, child processes): the CPU stays
    # about 90 % idle with two at once, so four mutants run side by side.
    ap.add_argument("--jobs", type=int, default=4, help="mutants tested at once")
    ap.add_argument("--only", help="only the mutants whose id matches this regex (with --sample 0: of all)")
    ap.add_argument("--work", default=WORK, help="the scratch directory (default build/mutate-schema)")
    ap.add_argument("--classic", type=int, default=-1,
                    help="at most this many mutants the switch cannot carry are built the classic way (-1: all)")
    ap.add_argument("--ids", help="re-run the mutants listed in this file (an id first on each line), as "
                    "tools/mutation/samples/ keeps each seed's sample; ids whose line has changed since are 'gone'")
    args = ap.parse_args()
    began = time.time()
    set_work(args.work)
    gone = []
    if args.ids:
        wanted = [line.split()[0] for line in open(args.ids) if line.strip() and not line.startswith("#")]
        mutants, total = generate.sample(0, 0)
        have = {m["id"] for m in mutants}
        mutants = [m for m in mutants if m["id"] in set(wanted)]
        gone = [line.rstrip("\n") for line in open(args.ids) if line.strip() and not line.startswith("#")
                and line.split()[0] not in have]
    else:
        mutants, total = generate.sample(args.sample, args.seed)
    if args.only:
        mutants = [m for m in mutants if re.search(args.only, m["id"])]
    os.makedirs(WORK, exist_ok=True)
    result = {}
    classic = []

    # Place each mutant behind its switch, or send it the classic way. Mutants
    # an earlier run found not to compile behind a switch are not tried again
    # (each try costs a rebuild of what includes their file).
    known_path = os.path.join(WORK, "no-switch.txt")
    known = dict(line.rstrip("\n").split("\t", 1) for line in open(known_path)) if os.path.exists(known_path) else {}
    cache, placed, spans = {}, {}, collections.defaultdict(list)
    for number, m in enumerate(mutants, 1):
        if known.get(m["id"]) == "does not compile":
            result[m["id"]] = "does not compile"
            continue
        if m["id"] in known:
            classic.append((m, "classic: does not compile behind a switch"))
            continue
        lines = cache.setdefault(m["file"], open(os.path.join(ROOT, m["file"]), encoding="utf-8").read().split("\n"))
        try:
            start, end, text = schema_edit(lines, m, number)
        except Unscannable as e:
            classic.append((m, "classic: " + str(e)))
            continue
        here = spans[(m["file"], m["line"])]
        if any(start < e and s < end for s, e, _, _ in here):
            classic.append((m, "classic: overlaps another mutant of its line"))
            continue
        here.append((start, end, text, number))
        placed[number] = m

    def edits():
        out = collections.defaultdict(lambda: collections.defaultdict(list))
        for (path, no), here in spans.items():
            for start, end, text, number in here:
                if number in placed:
                    out[path][no].append((start, end, text))
        return out

    switch_o = os.path.join(WORK, "switch.o")
    subprocess.run(["g++", "-std=c++20", "-O2", "-fPIC", "-c", os.path.join(HERE, "switch.cpp"), "-o", switch_o],
                   check=True)
    write_tree(edits())
    # -O0 without debug information: half the compile time of -O2 -g, and the
    # sanitizer build already runs every test at -O0.
    subprocess.run(["cmake", "-G", "Ninja", "-S", SRC, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Debug",
                    "-DCMAKE_CXX_FLAGS_DEBUG=-O0", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache",
                    "-DBACKOFF_BUILD_BENCH=OFF", "-DBACKOFF_BUILD_EXAMPLES=OFF", "-DBACKOFF_INSTALL=OFF",
                    "-DBACKOFF_WERROR=OFF", "-DCMAKE_CXX_FLAGS=-include " + os.path.join(HERE, "switch.hpp"),
                    "-DCMAKE_EXE_LINKER_FLAGS=" + switch_o],
                   check=True, stdout=subprocess.DEVNULL)
    targets = list(EXECUTABLES) + ["backoff_cli", "backoff_http_cli"]
    log(f"{len(mutants)} mutants of {total}; {len(placed)} behind switches; building")
    for attempt in range(8):
        failures = build(targets)
        if failures is None:
            break
        blamed = {}
        for command, output in failures:
            for n in blame(output, placed) & set(placed):
                blamed.setdefault(n, command)
        if not blamed:
            sys.exit("the schemata build fails and names no mutant:\n" + "\n".join(o for _, o in failures)[-3000:])
        for n, command in blamed.items():
            m = placed.pop(n)
            if command and not compiles_classic(m, command):
                result[m["id"]] = "does not compile"
            else:
                classic.append((m, "classic: does not compile behind a switch"))
            with open(known_path, "a") as f:
                f.write(m["id"] + "\t" + result.get(m["id"], "classic") + "\n")
        log(f"build {attempt + 1}: {len(blamed)} mutants do not compile behind a switch; rebuilding")
        write_tree(edits())
    else:
        sys.exit("the schemata build still fails after 8 rounds")
    built = time.time()

    # Which tests reach which mutant, and how long each takes without one.
    trace = os.path.join(WORK, "trace.tsv")
    if os.path.exists(trace):
        os.remove(trace)
    log("build done; running every test once with no mutant on")
    junit = os.path.join(WORK, "baseline.xml")
    subprocess.run(["ctest", "-j", "2", "-LE", "consumer|package", "-E",
                    "^(readme_snippets|license_headers|mutation_scanner|example_.*)$", "--output-junit", junit],
                   cwd=BUILD, env=dict(os.environ, BACKOFF_MUTANT_TRACE=trace),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = junit_times(junit)
    failing = set()
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            if case.get("status") not in ("run", None) or case.find("failure") is not None:
                failing.add(case.get("name"))
    reach = collections.defaultdict(lambda: collections.defaultdict(set))
    if os.path.exists(trace):
        for line in open(trace, encoding="utf-8", errors="replace"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[1] in EXECUTABLES and parts[2] not in failing:
                reach[int(parts[0])][parts[1]].add(parts[2])
    traced = time.time()
    log(f"baseline done ({len(failing)} tests failing without a mutant, left out)")

    def cost(number):
        return sum(times.get(t, 5) for names in reach.get(number, {}).values() for t in names)

    def one(number):
        m = placed[number]
        began_one = time.time()
        tests = sorted(((times.get(t, 5), exe, t) for exe, names in reach.get(number, {}).items() for t in names))
        if not tests:
            return number, "SURVIVED (no test reaches it)"
        flaky = None
        for seconds, exe, name in tests:
            limit = 30 + 5 * seconds
            outcome = run_test(exe, name, number, limit)
            if outcome == "pass":
                continue
            if outcome == "hung":
                return number, f"killed ({name} timed out after {limit:.0f} s)"
            # A kill counts when the test passes with the mutant off and fails again with it on;
            # a test that does not is flaky, and the next tests may still kill the mutant.
            if run_test(exe, name, 0, limit) != "pass":
                flaky = flaky or f"flaky ({name} fails with no mutant on)"
            elif run_test(exe, name, number, limit) == "pass":
                flaky = flaky or f"flaky ({name} failed once with the mutant, then passed)"
            else:
                return number, f"killed by {name}"
        if flaky:
            return number, flaky
        return number, ("equivalent (survived)" if m["equivalent"] else "SURVIVED") + \
            f" ({len(tests)} tests reach it, {time.time() - began_one:.0f} s)"

    # The costliest first, so that no long one is left alone at the end.
    order = sorted(placed, key=cost, reverse=True)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one, number) for number in order]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            number, outcome = future.result()
            result[placed[number]["id"]] = outcome
            log(f"[{done}/{len(placed)}] {outcome}: {placed[number]['shown'][:120]}")
    switched = time.time()
    log(f"switched mutants done; {len(classic)} go the classic way")

    # The rest, one build each (tools/mutate.sh).
    runnable = [m for m, _ in classic]
    if args.classic >= 0:
        runnable = runnable[:args.classic]
    why = {m["id"]: reason for m, reason in classic}
    if runnable:
        listing = os.path.join(WORK, "classic.txt")
        with open(listing, "w") as f:
            generate.write_list(runnable, f)
        r = subprocess.run(["bash", os.path.join(ROOT, "tools", "mutate.sh")], cwd=ROOT, capture_output=True,
                           text=True, env=dict(os.environ, MUTANTS=listing))
        for line in r.stdout.splitlines():
            parts = line.split(None, 1)
            if parts and parts[0] in why:
                outcome = re.split(r"\s{2,}", parts[1].strip())[0]
                result[parts[0]] = outcome + " [" + why[parts[0]].split(": ", 1)[1] + "]"
    for m, reason in classic:
        result.setdefault(m["id"], "not run [" + reason.split(": ", 1)[1] + "]")
    ended = time.time()

    # The table and the score.
    counts = collections.Counter()
    rows = []
    for m in mutants:
        outcome = result[m["id"]]
        if outcome.startswith("killed"):
            state = "killed"
        elif outcome.startswith("SURVIVED"):
            state = "survived"
        elif outcome.startswith("equivalent"):
            state = "equivalent"
        elif outcome.startswith("flaky"):
            state = "flaky"
        elif outcome.startswith("does not compile"):
            state = "not compiling"
        else:
            state = "not run"
        counts[state] += 1
        rows.append(f"| {m['id']} | {outcome} | {m['shown']} |")
    with open(os.path.join(WORK, "table.md"), "w") as f:
        f.write(f"# tools/mutation/schema.py --sample {args.sample} --seed {args.seed}\n\n"
                "| mutant | result | mutated line |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    print()
    for m in mutants:
        if result[m["id"]].startswith("SURVIVED"):
            print(f"survived: {m['id']} {m['shown']}  ({result[m['id']]})")
    for line in gone:
        print("gone (its line has changed): " + line.replace("\t", " "))
    if gone:
        counts["gone"] = len(gone)
    counted = counts["killed"] + counts["survived"]
    score = 100.0 * counts["killed"] / counted if counted else 0.0
    print(f"\nmutants: {len(mutants)} (seed {args.seed}, of {total}); " +
          ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) +
          f"; score {score:.1f} % of {counted}")
    print(f"time: build {built - began:.0f} s, baseline {traced - built:.0f} s, "
          f"switched {switched - traced:.0f} s ({len(placed)} mutants), classic {ended - switched:.0f} s "
          f"({len(runnable)} mutants); table in {os.path.relpath(os.path.join(WORK, 'table.md'), ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
