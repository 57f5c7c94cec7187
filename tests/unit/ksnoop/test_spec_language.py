# SPDX-License-Identifier: GPL-2.0-only
"""ksnoop/spec/language.py on its own: spec text -> TraceSpec, and every SpecError the parser raises,
with its exact message and the column its caret points at. No BTF, no kernel."""

from __future__ import annotations

import pytest

from btf.members import Step
from ksnoop.errors import UsageError
from ksnoop.spec.language import Item, Literal, LiteralKind, SpecError, TraceSpec, ValueExpr, parse_spec

# ---- errors ----------------------------------------------------------------------------------------------------------

# (spec, message, caret column): one or more rows per `raise SpecError(...)` in language.py, in its order.
PARSE_ERRORS = [
    # _tokens: a character no token starts with
    ("f(a @ 1)", "unexpected character '@'", 4),
    ("f(a = 1)", "unexpected character '='; did you mean '=='? (a comparison is ==, !=, >=, <=, >, <)", 4),
    ("f(a => 1)", "unexpected character '='; did you mean '>='? (a comparison is ==, !=, >=, <=, >, <)", 4),
    ("f(a =< 1)", "unexpected character '='; did you mean '<='? (a comparison is ==, !=, >=, <=, >, <)", 4),
    ("f(a ! 1)", "unexpected character '!'; did you mean '!='? (a comparison is ==, !=, >=, <=, >, <)", 4),
    ("f(a ~ 1)", "unexpected character '~'", 4),
    ("f(a - 1)", "unexpected character '-'", 4),
    ("ip-send", "unexpected character '-'", 2),
    ("tp:", "unexpected character ':'", 2),  # `tp:` needs a name: the lexer reads `tp`, then ':'
    # _Parser.next: the spec ends where something was expected (the caret is past the last character)
    ("f(", "expected an argument name or 'return', found the end of the spec", 2),
    ("f(a,", "expected an argument name or 'return', found the end of the spec", 4),
    ("f(a", "expected ',' or ')', found the end of the spec", 3),
    ("tp:net_dev_queue(skb->len", "expected ',' or ')', found the end of the spec", 25),
    ("f(a->", "expected a member name, found the end of the spec", 5),
    ("f(a[", "expected an index, found the end of the spec", 4),
    ("f(a[1", "expected ']', found the end of the spec", 5),
    ("f(a ==", 'expected a number, a "string", an enumerator or NULL, found the end of the spec', 6),
    # spec: nothing at all
    ("", "empty spec: expected a function name or tp:TRACEPOINT", 0),
    ("   ", "empty spec: expected a function name or tp:TRACEPOINT", 0),
    # spec: the target is not a name, or has a '.'
    ("(a)", "expected a function name or tp:TRACEPOINT, found '('", 0),
    ("123", "expected a function name or tp:TRACEPOINT, found '123'", 0),
    ('"f"', "expected a function name or tp:TRACEPOINT, found '\"f\"'", 0),
    ("  a.b", "expected a function name or tp:TRACEPOINT, found 'a.b'", 2),
    # spec: something other than '(' after the target
    ("f x", "expected '(' after 'f', found 'x'", 2),
    ("tp:net_dev_queue->len", "expected '(' after 'tp:net_dev_queue', found '->'", 16),
    # spec: parentheses with nothing in them
    ("f()", "empty '()': name the values to show, or leave out the parentheses", 2),
    ("f ( )", "empty '()': name the values to show, or leave out the parentheses", 4),
    # spec: an item not followed by ',' or ')'
    ("f(a b)", "expected ',' or ')', found 'b'", 4),
    ("f(a == 1 2)", "expected ',' or ')', found '2'", 9),
    # spec: anything after the closing ')'
    ("f(a) x", "unexpected 'x' after ')'", 5),
    ("f(a))", "unexpected ')' after ')'", 4),
    # no_glob: wildcards in a value, a member or an enumerator; the caret is on the wildcard itself
    ("f(a*)", "'*' is a wildcard for the target's name only, not for values", 3),
    ("tcp_*(skb->le*)", "'*' is a wildcard for the target's name only, not for values", 13),
    ("f(a->b?)", "'?' is a wildcard for the target's name only, not for values", 6),
    ("f(a == B*)", "'*' is a wildcard for the target's name only, not for values", 8),
    # value: not a name
    ("f(1)", "expected an argument name or 'return', found '1'", 2),
    ("f(a,)", "expected an argument name or 'return', found ')'", 4),
    ("f(tp:x)", "expected an argument name or 'return', found 'tp:x'", 2),
    # value: an empty member in the base's `.a.b` run (the caret is where the name should be)
    ("f(a..b)", "expected a member name after '.'", 4),
    ("f(a.)", "expected a member name after '.'", 4),
    # value: not a member name after '->' or a lone '.'
    ("f(a->1)", "expected a member name after '->', found '1'", 5),
    ("f(a->)", "expected a member name after '->', found ')'", 5),
    ("f(a->tp:x)", "expected a member name after '->', found 'tp:x'", 5),
    ("f(a[0].1)", "expected a member name after '.', found '1'", 7),
    # value: an empty member in a `->b.c` run
    ("f(a->b..c)", "expected a member name after '.'", 7),
    ("f(a->b.)", "expected a member name after '.'", 7),
    # value: an index that is not a non-negative number
    ("f(a[x])", "expected a non-negative index, found 'x'", 4),
    ("f(a[-1])", "expected a non-negative index, found '-1'", 4),
    ("f(a[])", "expected a non-negative index, found ']'", 4),
    # value: no ']' after the index
    ("f(a[1)", "expected ']', found ')'", 5),
    ("f(a[1 2])", "expected ']', found '2'", 6),
    # value: `return` with members; the caret is on the first step
    ("f(return->x)", "'return' is a value, not a pointer or struct; it takes no members", 8),
    ("f(return.x)", "'return' is a value, not a pointer or struct; it takes no members", 8),
    ("f(return[0])", "'return' is a value, not a pointer or struct; it takes no members", 8),
    # literal: not a number, string or plain name
    ("f(a == ,)", "expected a number, a \"string\", an enumerator or NULL, found ','", 7),
    ("f(a == b.c)", "expected a number, a \"string\", an enumerator or NULL, found 'b.c'", 7),
    ("f(a == tp:x)", "expected a number, a \"string\", an enumerator or NULL, found 'tp:x'", 7),
    ("f(a == (1))", "expected a number, a \"string\", an enumerator or NULL, found '('", 7),
    # _integer: a number token Python's int(..., 0) refuses, as an index or a literal
    ("f(a[0x])", "'0x' is not a number (decimal, or hex with 0x)", 4),
    ("f(a[1x])", "'1x' is not a number (decimal, or hex with 0x)", 4),
    ("f(a == 08)", "'08' is not a number (decimal, or hex with 0x)", 7),
    ("f(a == 12abc)", "'12abc' is not a number (decimal, or hex with 0x)", 7),
    # _string: no closing quote (the caret is on the opening one)
    ('f(a == "abc)', "string is not closed with '\"'", 7),
    ('f(a == "ab\\"', "string is not closed with '\"'", 7),
    ('f(a == "', "string is not closed with '\"'", 7),
    # _string: an escape it does not know (the caret is on the string)
    ('f(a == "a\\qb")', "unknown escape '\\q' in string", 7),
    ('f(a == "\\x41")', "unknown escape '\\x' in string", 7),
]


@pytest.mark.parametrize("spec,message,column", PARSE_ERRORS, ids=[s or "<empty>" for s, _, _ in PARSE_ERRORS])
def test_parse_errors(spec: str, message: str, column: int) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert (err.value.reason, err.value.position, err.value.text) == (message, column, spec)
    assert str(err.value) == f"{message}\n  {spec}\n  {' ' * column}^"
    assert isinstance(err.value, UsageError) and err.value.exit_status == 2


def test_the_caret_line_sits_under_the_spec() -> None:
    err = SpecError("bad", "f(x)", 2)
    assert str(err) == "bad\n  f(x)\n    ^"
    assert str(err).split("\n")[2].index("^") == str(err).split("\n")[1].index("x")


@pytest.mark.parametrize("position,clamped", [(-5, 0), (0, 0), (4, 4), (99, 4)])
def test_a_caret_position_is_kept_inside_the_text_or_just_past_it(position: int, clamped: int) -> None:
    err = SpecError("bad", "f(x)", position)
    assert err.position == clamped
    assert str(err) == "bad\n  f(x)\n  " + " " * clamped + "^"


# ---- what valid specs parse to ----------------------------------------------------------------------------------


def _value(spec: str) -> ValueExpr:
    (item,) = parse_spec(spec).items
    assert item.op is None and item.literal is None
    return item.value


def test_a_bare_target() -> None:
    assert parse_spec("ip_send_skb") == TraceSpec("ip_send_skb", "ip_send_skb", 0, ())
    assert parse_spec("  ip_send_skb  ") == TraceSpec("  ip_send_skb  ", "ip_send_skb", 2, ())


def test_a_tracepoint_target_keeps_its_prefix() -> None:
    spec = parse_spec("tp:net_dev_queue(skb)")
    assert (spec.target, spec.target_position, spec.is_glob) == ("tp:net_dev_queue", 0, False)
    assert spec.items == (Item(ValueExpr("skb", (), 17, 20)),)


@pytest.mark.parametrize(
    "target,glob",
    [
        ("tcp_v4_*", True),
        ("*", True),
        ("*_skb", True),
        ("tp:net_dev_?ueue", True),
        ("tp:*", True),
        ("ip_send_skb", False),
        ("tp:net_dev_queue", False),
        ("_x9", False),
    ],
)
def test_globs(target: str, glob: bool) -> None:
    spec = parse_spec(target + "(return)")
    assert (spec.target, spec.is_glob) == (target, glob)


def test_items_in_order_with_their_positions() -> None:
    spec = parse_spec("f(a, b->c, return)")
    assert spec.items == (
        Item(ValueExpr("a", (), 2, 3)),
        Item(ValueExpr("b", (Step("->", "c", 0, 6),), 5, 9)),
        Item(ValueExpr("return", (), 11, 17)),
    )


def test_steps_arrows_dots_and_indexes() -> None:
    value = _value("f(skb->dev->name[0x1f])")
    assert value.base == "skb"
    assert value.steps == (Step("->", "dev", 0, 5), Step("->", "name", 0, 10), Step("[]", "", 31, 16))
    assert (value.position, value.end, value.text) == (2, 22, "skb->dev->name[31]")


def test_a_dotted_name_is_split_into_steps_at_each_dot() -> None:
    # The lexer reads `a.b.c` as one name; each '.' step's position is its dot's.
    assert _value("f(a.b.c)").steps == (Step(".", "b", 0, 3), Step(".", "c", 0, 5))
    assert _value("f(a->b.c.d)").steps == (Step("->", "b", 0, 3), Step(".", "c", 0, 6), Step(".", "d", 0, 8))
    assert _value("f(a[2].b)").steps == (Step("[]", "", 2, 3), Step(".", "b", 0, 6))
    assert _value("f(file->f_path.dentry->d_name.name)").text == "file->f_path.dentry->d_name.name"


def test_spacing_is_normalised_in_the_label_but_positions_are_the_texts() -> None:
    value = _value("f(  skb -> dev -> name [ 3 ] )")
    assert value.text == "skb->dev->name[3]"
    assert value.steps == (Step("->", "dev", 0, 8), Step("->", "name", 0, 15), Step("[]", "", 3, 23))
    assert (value.position, value.end) == (4, 28)
    assert _value("f(x . y)").text == "x.y"
    assert _value("f(a[0] . b)").text == "a[0].b"


def test_an_index_in_hex_is_shown_in_decimal() -> None:
    assert _value("f(a[0x10])").text == "a[16]"


@pytest.mark.parametrize("op", ["==", "!=", ">", ">=", "<", "<="])
def test_every_operator(op: str) -> None:
    (item,) = parse_spec(f"f(a{op}1)").items
    assert (item.op, item.literal) == (op, Literal(LiteralKind.INTEGER, 1, 3 + len(op)))


def test_a_predicate_on_a_member_and_on_return() -> None:
    spec = parse_spec("f(skb->len >= 100, return != 0)")
    assert spec.items == (
        Item(ValueExpr("skb", (Step("->", "len", 0, 5),), 2, 10), ">=", Literal(LiteralKind.INTEGER, 100, 14), 11),
        Item(ValueExpr("return", (), 19, 25), "!=", Literal(LiteralKind.INTEGER, 0, 29), 26),
    )


@pytest.mark.parametrize(
    "spec,column",
    [
        ("f(a>1)", 3),
        ("f(a >1)", 4),
        ("f(a  >=  1)", 5),
        ('f(a->b!="x")', 6),
        ("f(a[2] <= -1)", 7),
    ],
)
def test_an_operator_keeps_its_own_position(spec: str, column: int) -> None:
    # The resolver puts carets on the operator: from where it is, not from the literal after it.
    (item,) = parse_spec(spec).items
    assert item.op_position == column and spec[column:].startswith(item.op or "?")


@pytest.mark.parametrize(
    "text,value",
    [
        ("0", 0),
        ("42", 42),
        ("-7", -7),
        ("0x800", 0x800),
        ("0X1f", 31),
        ("-0x10", -16),
        ("18446744073709551615", (1 << 64) - 1),
    ],
)
def test_integer_literals(text: str, value: int) -> None:
    (item,) = parse_spec(f"f(a == {text})").items
    assert item.literal == Literal(LiteralKind.INTEGER, value, 7)


@pytest.mark.parametrize(
    "text,value",
    [
        ('""', ""),
        ('"lo"', "lo"),
        ('"a b,c)"', "a b,c)"),
        ('"\\n\\t"', "\n\t"),
        ('"\\\\"', "\\"),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"nul\\0"', "nul\0"),
        ('"x\\\\"', "x\\"),
    ],
)
def test_string_literals_and_their_escapes(text: str, value: str) -> None:
    (item,) = parse_spec(f"f(a == {text})").items
    assert item.literal == Literal(LiteralKind.STRING, value, 7)


@pytest.mark.parametrize("name", ["NULL", "SKB_CONSUMED", "_x1"])
def test_name_literals_are_enumerators_or_null(name: str) -> None:
    (item,) = parse_spec(f"f(a != {name})").items
    assert item.literal == Literal(LiteralKind.NAME, name, 7)


def test_no_space_around_an_operator() -> None:
    # `>=` is one operator, and `->` in a value is a step, not a comparison.
    (item,) = parse_spec("f(a->b>=-1)").items
    assert (item.value.text, item.op, item.literal) == ("a->b", ">=", Literal(LiteralKind.INTEGER, -1, 8))
    (item,) = parse_spec('f(a=="x")').items
    assert (item.op, item.literal) == ("==", Literal(LiteralKind.STRING, "x", 5))


def test_the_same_value_twice_is_two_items() -> None:
    spec = parse_spec("f(x > 1, x)")
    assert [(i.value.text, i.op) for i in spec.items] == [("x", ">"), ("x", None)]
