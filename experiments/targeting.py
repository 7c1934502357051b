"""Targeting: a small condition language over request ``attributes``, compiled once.

An experiment's ``targeting`` is one expression; units whose attributes do not match it are
served the surface default and log no exposure. The grammar::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := NAME ("==" | "!=") value
                | NAME ("<" | "<=" | ">" | ">=") NUMBER
                | NAME ["not"] "in" "[" value ("," value)* "]"
    value      := STRING | NUMBER | "true" | "false"

for example ``country in ["JP", "KR"] and app_version >= 3.2 and not (platform == "web")``.

Semantics, chosen so that a surprising request never lands in an experiment by accident:

- A comparison on an attribute the request does not carry is **false** (``!=`` and ``not in``
  included); ``not (...)`` negates the whole comparison, so ``not (country == "JP")`` is true
  for a request without ``country``.
- ``==``/``!=``/``in`` compare strings with strings, booleans with booleans and numbers with
  numbers (``1 == 1.0``); values of other types never match.
- ``<``, ``<=``, ``>``, ``>=`` take a number literal and are false when the attribute is not a
  number (a string ``"3"`` is not a number; booleans are not numbers).

``compile_condition`` checks the whole expression at apply time and raises ``TargetingError``
with the column of the problem; the compiled ``Condition`` is a plain closure, cheap per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from experiments.errors import TargetingError

Scalar = str | float | bool
Predicate = Callable[[Mapping[str, object]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
      | (?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_MAX_LENGTH = 4000


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, op, name, keyword, end
    text: str
    column: int


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled targeting expression: call it with a request's attributes."""

    source: str
    predicate: Predicate

    def __call__(self, attributes: Mapping[str, object]) -> bool:
        return self.predicate(attributes)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            col = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise TargetingError(f"unexpected character {text[col - 1]!r}", col)
        kind = m.lastgroup or ""
        value = m.group(kind)
        column = m.start(kind) + 1
        if kind == "name" and value in _KEYWORDS:
            kind = "keyword"
        tokens.append(_Token(kind, value, column))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _same_kind(attr: object, literal: Scalar) -> bool:
    if isinstance(literal, bool) or isinstance(attr, bool):
        return isinstance(attr, bool) and isinstance(literal, bool)
    if isinstance(literal, str):
        return isinstance(attr, str)
    return isinstance(attr, int | float)


def _equals(attr: object, literal: Scalar) -> bool:
    return _same_kind(attr, literal) and attr == literal


class _Parser:
    """Recursive descent over the token list; builds closures as it goes."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _take(self) -> _Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def _expect(self, text: str) -> _Token:
        t = self.tok
        if t.text != text or t.kind not in ("op", "keyword"):
            raise TargetingError(f"expected '{text}', found {_describe(t)}", t.column)
        return self._take()

    def parse(self) -> Predicate:
        pred = self._or()
        if self.tok.kind != "end":
            raise TargetingError(
                f"expected 'and', 'or' or the end, found {_describe(self.tok)}", self.tok.column
            )
        return pred

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self.tok.kind == "keyword" and self.tok.text == "or":
            self._take()
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        alternatives = tuple(parts)
        return lambda a: any(p(a) for p in alternatives)

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self.tok.kind == "keyword" and self.tok.text == "and":
            self._take()
            parts.append(self._not())
        if len(parts) == 1:
            return parts[0]
        required = tuple(parts)
        return lambda a: all(p(a) for p in required)

    def _not(self) -> Predicate:
        t = self.tok
        if t.kind == "keyword" and t.text == "not":
            self._take()
            inner = self._not()
            return lambda a: not inner(a)
        if t.kind == "op" and t.text == "(":
            self._take()
            inner = self._or()
            self._expect(")")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        name_tok = self._take()
        if name_tok.kind != "name":
            raise TargetingError(
                f"expected an attribute name, found {_describe(name_tok)}", name_tok.column
            )
        name = name_tok.text
        op = self._take()
        if op.kind == "keyword" and op.text in ("in", "not"):
            negate = op.text == "not"
            if negate:
                self._expect("in")
            values = self._list()
            if negate:
                return lambda a: name in a and not any(_equals(a[name], v) for v in values)
            return lambda a: name in a and any(_equals(a[name], v) for v in values)
        if op.kind != "op" or op.text not in ("==", "!=", "<", "<=", ">", ">="):
            raise TargetingError(
                f"expected a comparison (==, !=, <, <=, >, >=, in, not in) after '{name}', found {_describe(op)}",
                op.column,
            )
        value_tok = self.tok
        value = self._value()
        if op.text == "==":
            return lambda a: name in a and _equals(a[name], value)
        if op.text == "!=":
            return lambda a: name in a and not _equals(a[name], value)
        if isinstance(value, bool) or not isinstance(value, float):
            raise TargetingError(
                f"'{op.text}' compares numbers; found {_describe(value_tok)}", value_tok.column
            )
        return _numeric(name, op.text, value)

    def _list(self) -> tuple[Scalar, ...]:
        self._expect("[")
        values = [self._value()]
        while self.tok.kind == "op" and self.tok.text == ",":
            self._take()
            values.append(self._value())
        self._expect("]")
        return tuple(values)

    def _value(self) -> Scalar:
        t = self._take()
        if t.kind == "number":
            return float(t.text)
        if t.kind == "string":
            return _unquote(t.text)
        if t.kind == "keyword" and t.text in ("true", "false"):
            return t.text == "true"
        raise TargetingError(
            f"expected a value (string, number, true, false), found {_describe(t)}", t.column
        )


def _numeric(name: str, op: str, bound: float) -> Predicate:
    compare: Callable[[float], bool] = {
        "<": lambda x: x < bound,
        "<=": lambda x: x <= bound,
        ">": lambda x: x > bound,
        ">=": lambda x: x >= bound,
    }[op]

    def predicate(a: Mapping[str, object]) -> bool:
        v = a.get(name)
        return isinstance(v, int | float) and not isinstance(v, bool) and compare(v)

    return predicate


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _describe(t: _Token) -> str:
    return "the end of the expression" if t.kind == "end" else f"'{t.text}'"


def compile_condition(text: str) -> Condition:
    """Compile a targeting expression; raise ``TargetingError`` (with a column) if invalid."""
    if not text.strip():
        raise TargetingError("is empty; omit 'targeting' to include every unit", 1)
    if len(text) > _MAX_LENGTH:
        raise TargetingError(f"is longer than {_MAX_LENGTH} characters", _MAX_LENGTH)
    return Condition(text, _Parser(text).parse())
