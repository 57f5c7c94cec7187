# SPDX-License-Identifier: GPL-2.0-only
"""The trace spec language: text -> TraceSpec, with the source span of every part.

    SPEC    := TARGET [ "(" ITEM { "," ITEM } ")" ]
    TARGET  := function name | "tp:" tracepoint name; either may be a glob with `*` and `?`
    ITEM    := VALUE [ OP LITERAL ]
    VALUE   := "return" | NAME { "->" NAME | "." NAME | "[" INTEGER "]" }
    OP      := "==" | "!=" | ">" | ">=" | "<" | "<="
    LITERAL := INTEGER | "string" | NAME (an enumerator, or NULL)

This module knows nothing of the kernel's types; resolve.py gives the names meaning. A value's
steps are btf.members' Step, the path step btf resolves to offsets, so they go to it as they are.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

from btf.members import Step

from ksnoop.errors import UsageError

RETURN = "return"
GLOB_CHARS = "*?"
OPERATORS = ("==", "!=", ">=", "<=", ">", "<")


class SpecError(UsageError):
    """A spec that does not parse or does not fit the kernel's types, pointing at `position`."""

    def __init__(self, message: str, text: str, position: int):
        self.text = text
        self.position = max(0, min(position, len(text)))
        self.reason = message
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.reason}\n  {self.text}\n  {' ' * self.position}^"


@dataclass(frozen=True)
class ValueExpr:
    base: str  # an argument's name, or "return"
    steps: Tuple[Step, ...]  # after the base: `->name`, `.name`, `[index]`, each at its operator's position
    position: int
    end: int

    @property
    def text(self) -> str:
        """The expression with spacing normalised: `skb->dev->name`, `a.b[2]`."""
        out = [self.base]
        for step in self.steps:
            out.append(f"[{step.index}]" if step.op == "[]" else step.op + step.name)
        return "".join(out)


class LiteralKind(enum.Enum):
    INTEGER = "integer"
    STRING = "string"
    NAME = "name"  # an enumerator or NULL


@dataclass(frozen=True)
class Literal:
    kind: LiteralKind
    value: Union[int, str]
    position: int


@dataclass(frozen=True)
class Item:
    value: ValueExpr
    op: Optional[str] = None
    literal: Optional[Literal] = None
    op_position: int = 0  # where `op` starts in the spec's text (0 without one)


@dataclass(frozen=True)
class TraceSpec:
    text: str
    target: str  # "ip_send_skb" or "tp:net_dev_queue"
    target_position: int
    items: Tuple[Item, ...]  # empty: show everything

    @property
    def is_glob(self) -> bool:
        """The target is a shell glob (`tcp_v4_*`, `tp:net_dev_?ueue`) naming many targets."""
        return any(ch in self.target for ch in GLOB_CHARS)


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"?)
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|\d+)[A-Za-z0-9_]*)
  | (?P<name>(?:tp:)?[A-Za-z_*?][A-Za-z0-9_.*?]*)
  | (?P<op>->|==|!=|>=|<=|>|<)
  | (?P<punct>[(),.\[\]])
""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "0": "\0"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


# Operators as C spells them wrong, and what was meant.
_MISSPELT = {"=>": ">=", "=<": "<=", "=": "==", "!": "!="}


def _meant(text: str, pos: int) -> str:
    for wrong, right in _MISSPELT.items():
        if text.startswith(wrong, pos):
            return f"; did you mean '{right}'? (a comparison is {', '.join(OPERATORS)})"
    return ""


def _tokens(text: str) -> List[_Token]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SpecError(f"unexpected character '{text[pos]}'{_meant(text, pos)}", text, pos)
        kind = m.lastgroup or ""
        if kind != "space":
            out.append(_Token(kind, m.group(), pos))
        pos = m.end()
    return out


def parse_spec(text: str) -> TraceSpec:
    """Parse one spec; SpecError (a usage error) with the position of the first problem."""
    return _Parser(text).spec()


def parse_values(text: str) -> Tuple[ValueExpr, ...]:
    """`VALUE { "," VALUE }`, as --count-by takes them; SpecError pointing into `text`."""
    return _Parser(text).values()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> Optional[_Token]:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self, expected: str) -> _Token:
        tok = self.peek()
        if tok is None:
            raise SpecError(f"expected {expected}, found the end of the spec", self.text, len(self.text))
        self.i += 1
        return tok

    def fail(self, message: str, tok: Optional[_Token]) -> SpecError:
        return SpecError(message, self.text, tok.position if tok else len(self.text))

    def no_glob(self, tok: _Token) -> None:
        """Glob characters belong to the target only; an item names one value."""
        for i, ch in enumerate(tok.text):
            if ch in GLOB_CHARS:
                raise SpecError(
                    f"'{ch}' is a wildcard for the target's name only, not for values", self.text, tok.position + i
                )

    def spec(self) -> TraceSpec:
        if not self.text.strip():
            raise SpecError("empty spec: expected a function name or tp:TRACEPOINT", self.text, 0)
        tok = self.next("a function name or tp:TRACEPOINT")
        if tok.kind != "name" or "." in tok.text:
            raise self.fail(f"expected a function name or tp:TRACEPOINT, found '{tok.text}'", tok)
        items: List[Item] = []
        after = self.peek()
        if after is not None:
            if after.text != "(":
                raise self.fail(f"expected '(' after '{tok.text}', found '{after.text}'", after)
            self.i += 1
            if self.peek() is not None and self.peek().text == ")":  # type: ignore[union-attr]
                raise self.fail("empty '()': name the values to show, or leave out the parentheses", self.peek())
            while True:
                items.append(self.item())
                sep = self.next("',' or ')'")
                if sep.text == ")":
                    break
                if sep.text != ",":
                    raise self.fail(f"expected ',' or ')', found '{sep.text}'", sep)
            extra = self.peek()
            if extra is not None:
                raise self.fail(f"unexpected '{extra.text}' after ')'", extra)
        return TraceSpec(self.text, tok.text, tok.position, tuple(items))

    def values(self) -> Tuple[ValueExpr, ...]:
        if not self.text.strip():
            raise SpecError("empty: expected a value, such as an argument name, 'return' or 'comm'", self.text, 0)
        out = [self.value()]
        while self.peek() is not None:
            sep = self.next("','")
            if sep.text != ",":
                raise self.fail(f"expected ',' between values, found '{sep.text}'", sep)
            out.append(self.value())
        return tuple(out)

    def item(self) -> Item:
        value = self.value()
        tok = self.peek()
        if tok is None or tok.kind != "op":  # value() took every '->' after the value
            return Item(value)
        self.i += 1
        return Item(value, tok.text, self.literal(), tok.position)

    def value(self) -> ValueExpr:
        tok = self.next("an argument name or 'return'")
        if tok.kind != "name" or tok.text.startswith("tp:"):
            raise self.fail(f"expected an argument name or 'return', found '{tok.text}'", tok)
        self.no_glob(tok)
        start = tok.position
        # The name token swallows `.member` runs (`a.b.c`); split them back into steps.
        base, *members = tok.text.split(".")
        steps: List[Step] = []
        pos = tok.position + len(base)
        for member in members:
            if not member:
                raise SpecError("expected a member name after '.'", self.text, pos + 1)
            steps.append(Step(".", member, 0, pos))
            pos += 1 + len(member)
        end = tok.position + len(tok.text)
        while True:
            after = self.peek()
            if after is None:
                break
            tok = after
            if tok.text in ("->", "."):
                self.i += 1
                name = self.next("a member name")
                if name.kind != "name" or name.text.startswith("tp:"):
                    raise self.fail(f"expected a member name after '{tok.text}', found '{name.text}'", name)
                self.no_glob(name)
                parts = name.text.split(".")
                steps.append(Step(tok.text, parts[0], 0, tok.position))
                pos = name.position + len(parts[0])
                for member in parts[1:]:
                    if not member:
                        raise SpecError("expected a member name after '.'", self.text, pos + 1)
                    steps.append(Step(".", member, 0, pos))
                    pos += 1 + len(member)
                end = name.position + len(name.text)
            elif tok.text == "[":
                self.i += 1
                index = self.next("an index")
                if index.kind != "number" or index.text.startswith("-"):
                    raise self.fail(f"expected a non-negative index, found '{index.text}'", index)
                close = self.next("']'")
                if close.text != "]":
                    raise self.fail(f"expected ']', found '{close.text}'", close)
                steps.append(Step("[]", "", _integer(index, self.text), tok.position))
                end = close.position + 1
            else:
                break
        if base == RETURN and steps:
            raise SpecError(
                "'return' is a value, not a pointer or struct; it takes no members", self.text, steps[0].position
            )
        return ValueExpr(base, tuple(steps), start, end)

    def literal(self) -> Literal:
        tok = self.next('a number, a "string", an enumerator or NULL')
        if tok.kind == "number":
            return Literal(LiteralKind.INTEGER, _integer(tok, self.text), tok.position)
        if tok.kind == "string":
            return Literal(LiteralKind.STRING, _string(tok, self.text), tok.position)
        if tok.kind == "name" and "." not in tok.text and not tok.text.startswith("tp:"):
            self.no_glob(tok)
            return Literal(LiteralKind.NAME, tok.text, tok.position)
        raise self.fail(f"expected a number, a \"string\", an enumerator or NULL, found '{tok.text}'", tok)


def _integer(tok: _Token, text: str) -> int:
    try:
        return int(tok.text, 0)
    except ValueError:
        raise SpecError(f"'{tok.text}' is not a number (decimal, or hex with 0x)", text, tok.position) from None


def _string(tok: _Token, text: str) -> str:
    body = tok.text
    if len(body) < 2 or not body.endswith('"') or body.endswith('\\"') and not body.endswith('\\\\"'):
        raise SpecError("string is not closed with '\"'", text, tok.position)
    out = []
    chars = iter(body[1:-1])
    for ch in chars:
        if ch == "\\":
            esc = next(chars, "")
            if esc not in _ESCAPES:
                raise SpecError(f"unknown escape '\\{esc}' in string", text, tok.position)
            out.append(_ESCAPES[esc])
        else:
            out.append(ch)
    return "".join(out)
