#!/usr/bin/env python3
# SPDX-License-Identifier: BSL-1.0
"""The operand scanner of tools/mutation/schema.py. With every switch off, a switched line
must compute what the original did: each case here is a line, the operator mutated, and the
text the switch must wrap (a wrong span would put parentheses where the original had none)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate  # noqa: E402
import schema  # noqa: E402


def binary(line, op, nth=0, before=None, after=None):
    lines = ([before] if before is not None else []) + [line] + ([after] if after is not None else [])
    no = 2 if before is not None else 1
    at, start = -1, 0
    for _ in range(nth + 1):
        at = line.index(" " + op + " ", start)
        start = at + 1
    begin, end = schema.operand_span(lines, no, at, " " + op + " ")
    return line[begin:end]


class OperandSpan(unittest.TestCase):
    def test_same_precedence_to_the_left_belongs_to_the_left_operand(self):
        self.assertEqual(binary("  x = a - b + c;", "+"), "a - b + c")
        self.assertEqual(binary("  x = a - b + c;", "-"), "a - b")

    def test_tighter_operators_stay_inside_looser_ones_stop(self):
        self.assertEqual(binary("  x = a + b * c;", "+"), "a + b * c")
        self.assertEqual(binary("  x = a + b * c;", "*"), "b * c")
        self.assertEqual(binary("  if (a && b || c) f();", "&&"), "a && b")
        self.assertEqual(binary("  if (a && b || c) f();", "||"), "a && b || c")
        self.assertEqual(binary("  ok = i + 2 >= v.size();", ">="), "i + 2 >= v.size()")

    def test_calls_templates_and_members_are_operands(self):
        self.assertEqual(binary("  return f(a, b) == g<int>(c);", "=="), "f(a, b) == g<int>(c)")
        self.assertEqual(binary("  if (s->n > std::get<0>(t).size()) {", ">"), "s->n > std::get<0>(t).size()")
        self.assertEqual(binary("  std::array<int, N + 1> x;", "+"), "N + 1")
        self.assertEqual(binary("  for (int i = 0; i < n; ++i) {", "<"), "i < n")

    def test_a_literal_is_one_operand(self):
        self.assertEqual(binary('  if (name == "a b") return;', "=="), 'name == "a b"')

    def test_the_ternary_and_assignments_bound_the_operands(self):
        self.assertEqual(binary("  y = c ? a + b : d;", "+"), "a + b")
        self.assertEqual(binary("  total += a * b;", "*"), "a * b")

    def test_an_expression_that_spans_lines_is_left_to_the_classic_way(self):
        with self.assertRaises(schema.Unscannable):
            binary("      b < c;", "<", before="  x = a +")
        with self.assertRaises(schema.Unscannable):
            binary("  x = a < b", "<", after="      + c;")
        self.assertEqual(binary("      b < c;", "<", before="  x = a ||"), "b < c")
        self.assertEqual(binary("  x = a < b", "<", after="      && c;"), "a < b")


class Edits(unittest.TestCase):
    def edit(self, line, kind, col=0, old="", new=""):
        m = {"kind": kind, "line": 1, "col": col, "old": old, "new": new}
        start, end, text = schema.schema_edit([line], m, 7)
        return line[:start] + text + line[end:]

    def test_not_keeps_the_operand_whole(self):
        line = "  if (!s->ready() && x) go();"
        self.assertEqual(self.edit(line, "not", line.index("!")),
                         "  if ((backoff_mutant_on<7>() ? static_cast<bool>(s->ready()) : !s->ready()) && x) go();")

    def test_a_deleted_call_keeps_its_comment_outside(self):
        self.assertEqual(self.edit("  f(a);  // why", "delete"), "  if (!backoff_mutant_on<7>()) f(a);  // why")

    def test_an_emptied_return_is_one_statement(self):
        self.assertEqual(self.edit("  return x;", "return"), "  { if (backoff_mutant_on<7>()) return {}; return x; }")

    def test_a_logical_operator_is_switched_with_its_whole_chain(self):
        # Switched, the mutant must parse as its plain text does: && binds tighter than ||.
        line = "  if (a && b && c) f();"
        self.assertEqual(self.edit(line, "logic", line.index(" && "), " && ", " || "),
                         "  if ((backoff_mutant_on<7>() ? (a || b && c) : (a && b && c))) f();")
        line = "  ok = x || y && z;"
        self.assertEqual(self.edit(line, "logic", line.index(" && "), " && ", " || "),
                         "  ok = (backoff_mutant_on<7>() ? (x || y || z) : (x || y && z));")
        # A chain that goes on over the next line keeps the operator's own operands.
        lines = ["  if (a && b &&", "      c) f();"]
        m = {"kind": "logic", "line": 1, "col": lines[0].index(" && "), "old": " && ", "new": " || "}
        start, end, text = schema.schema_edit(lines, m, 7)
        self.assertEqual(text, "(backoff_mutant_on<7>() ? (a || b) : (a && b))")

    def test_a_constant(self):
        line = "  int n = 32;"
        self.assertEqual(self.edit(line, "const", line.index("32"), "32", "33"),
                         "  int n = (backoff_mutant_on<7>() ? 33 : 32);")


class Generate(unittest.TestCase):
    def test_a_raw_string_over_several_lines_is_text_not_code(self):
        lines = ['const char* lua = R"lua(', "  if a == b then", ')lua";', "x = a == b;"]
        self.assertEqual([(kind, no) for kind, no, *_ in generate.mutants_of("f.cpp", lines)], [("rel", 4)])

    def test_comments_and_strings_are_not_mutated(self):
        lines = ['s = "a < b"; // c < d', "/* e < f", "g < h */ y = 1;"]
        self.assertEqual([(kind, no) for kind, no, *_ in generate.mutants_of("f.cpp", lines)], [("const", 3)])


if __name__ == "__main__":
    unittest.main()
