"""The fraud rules language: tokenizer and recursive-descent parser (``engine.fraud.rules``
compiles the tree into closures).  No ``eval``, ``exec``, ``compile`` or ``ast``.

Grammar (keywords and function names are case-insensitive)::

    rule       := or_expr EOF
    or_expr    := and_expr ('or' and_expr)*
    and_expr   := not_expr ('and' not_expr)*
    not_expr   := 'not' not_expr | comparison
    comparison := sum [('=' | '==' | '!=' | '<' | '<=' | '>' | '>=') sum
                       | ['not'] 'in' ('@' list | '(' literal (',' literal)* [','] ')')]
    sum        := product (('+' | '-') product)*
    product    := unary (('*' | '/') unary)*
    unary      := '-' unary | primary
    primary    := number | string | 'true' | 'false' | ':' attribute ':'
                | function '(' [or_expr (',' or_expr)*] ')' | '(' or_expr ')'

Every node carries its static kind (``num``, ``str``, ``bool``, or ``any`` for attributes), so
obvious type errors (``'a' + 1``, ``'x' < 3``, ``lower(5)``) are reported at compile time.
Positions in error messages are 0-based character offsets into the expression.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, cast

from engine.errors import ValidationError

MAX_LENGTH = 2_000
MAX_NESTING = 32  # parentheses, not, unary minus and function calls inside one another
MAX_DEPTH = 64  # height of the expression tree (long chains of arithmetic)
Kind = Literal["num", "str", "bool", "any"]
Scalar = int | float | str | bool
# name -> (argument kinds, result kind); "any" accepts everything
FUNCTIONS: dict[str, tuple[tuple[Kind, ...], Kind]] = {
    "is_missing": (("any",), "bool"),
    "lower": (("str",), "str"),
    "upper": (("str",), "str"),
    "starts_with": (("str", "str"), "bool"),
    "ends_with": (("str", "str"), "bool"),
    "contains": (("str", "str"), "bool"),
}
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
COMPARISONS = ("==", "=", "!=", "<", "<=", ">", ">=")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_KIND_NAMES = {"num": "a number", "str": "a string", "bool": "a condition", "any": "a value"}


class RuleError(ValidationError):
    """A rule expression (or a rule) is not acceptable; ``position`` is the 0-based offset."""

    code = "invalid_rule"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = "expression",
        position: int | None = None,
        items: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, field=field, items=items)
        self.position = position


def valid_list_name(name: str) -> bool:
    """``[A-Za-z_][A-Za-z0-9_.]*``: what may follow ``@``."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) is not None


@dataclass(frozen=True, slots=True)
class Node:
    """``op``: lit, attr, not, neg, and, or, + - * /, = != < <= > >=, in, not in, call."""

    op: str
    pos: int
    kind: Kind
    depth: int = 1
    args: tuple[Node, ...] = ()
    value: Scalar | tuple[Scalar, ...] | None = None  # lit: the value; in: the tuple
    name: str = ""  # attr: attribute; in: list name ("" for a tuple); call: function


@dataclass(frozen=True, slots=True)
class Parsed:
    tree: Node
    attributes: frozenset[str]  # every attribute the expression reads
    lists: frozenset[str]  # every list it reads


# --- tokens -------------------------------------------------------------------------------------


TokenKind = Literal["num", "str", "attr", "list", "word", "op", "eof"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # the operator, the word (lower-cased), the name, or the string's value
    pos: int
    number: int | float = 0


def _describe(tok: Token) -> str:
    return {
        "eof": "the end of the expression",
        "str": "a string",
        "num": f"number {tok.text}",
        "attr": f"attribute ':{tok.text}:'",
        "list": f"list '@{tok.text}'",
    }.get(tok.kind, f"'{tok.text}'")


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | :(?P<attr>[a-z_][a-z0-9_.]*):
    | @(?P<list>[A-Za-z_][A-Za-z0-9_.]*)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|[=<>+\-*/(),])
    )""",
    re.VERBOSE | re.DOTALL,
)
_BAD_START = {
    **dict.fromkeys("'\"", "unterminated string"),
    ":": "malformed attribute (expected :name: of lower-case letters, digits, '_' and '.')",
    "@": "malformed list name",
}


def tokenize(text: str) -> list[Token]:
    """Tokens of ``text``, by one scanner regex; a string's backslash escapes the next char."""
    tokens: list[Token] = []
    end = len(text.rstrip())
    i = 0
    while i < end:
        m = _TOKEN.match(text, i)
        if m is None or m.lastgroup is None:
            i += len(text[i:]) - len(text[i:].lstrip())
            why = _BAD_START.get(text[i], f"unexpected character {text[i]!r}")
            raise RuleError(f"{why} at position {i}", position=i)
        kind, raw, pos = m.lastgroup, m.group(m.lastgroup), m.end() - len(m.group().lstrip())
        if kind == "num":
            number = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(Token("num", raw, pos, number))
        elif kind == "str":
            tokens.append(Token("str", _ESCAPE.sub(r"\1", raw[1:-1]), pos))
        else:
            tokens.append(Token(cast(TokenKind, kind), raw.lower() if kind == "word" else raw, pos))
        i = m.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


# --- parser -------------------------------------------------------------------------------------


class Parser:
    def __init__(
        self,
        text: str,
        known_attributes: Collection[str] | None,
        known_lists: Collection[str] | None,
    ) -> None:
        if len(text) > MAX_LENGTH:
            raise RuleError(
                f"expression longer than {MAX_LENGTH} characters ({len(text)}) at position "
                f"{MAX_LENGTH}",
                position=MAX_LENGTH,
            )
        if not text.strip():
            raise RuleError("empty expression at position 0", position=0)
        self.tokens = tokenize(text)
        self.i = self.nesting = 0
        self.known_attributes = known_attributes
        self.known_lists = known_lists
        self.attributes: set[str] = set()
        self.lists: set[str] = set()

    def parse(self) -> Node:
        node = self.condition(self.or_expr())
        if self.peek.kind != "eof":
            self.fail(f"unexpected {_describe(self.peek)}")
        return node

    # helpers
    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        self.i += 1
        return self.tokens[self.i - 1]

    def at(self, kind: str, *texts: str) -> bool:
        tok = self.tokens[self.i]
        return tok.kind == kind and (not texts or tok.text in texts)

    def fail(self, message: str, pos: int | None = None) -> NoReturn:
        pos = self.peek.pos if pos is None else pos
        raise RuleError(f"{message} at position {pos}", position=pos)

    def expect(self, kind: str, text: str, what: str) -> Token:
        if not self.at(kind, text):
            self.fail(f"expected {what}, found {_describe(self.peek)}")
        return self.next()

    def nested(self, sub: Callable[[], Node]) -> Node:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            self.fail(f"expression nested more than {MAX_NESTING} levels deep")
        node = sub()
        self.nesting -= 1
        return node

    def node(
        self,
        op: str,
        pos: int,
        kind: Kind,
        *args: Node,
        value: tuple[Scalar, ...] | None = None,
        name: str = "",
    ) -> Node:
        depth = 1 + max((a.depth for a in args), default=0)
        if depth > MAX_DEPTH:
            self.fail(f"expression more than {MAX_DEPTH} operations deep", pos)
        return Node(op, pos, kind, depth, args, value, name)

    def condition(self, node: Node) -> Node:
        if node.kind == "str":
            self.fail("expected a condition, found a string", node.pos)
        return node

    def operand(self, node: Node, kind: Kind, what: str) -> Node:
        if node.kind not in ("any", kind):
            found = _KIND_NAMES[node.kind]
            self.fail(f"{what} needs {_KIND_NAMES[kind]}, found {found}", node.pos)
        return node

    # grammar, loosest binding first
    def or_expr(self) -> Node:
        return self.logic("or", self.and_expr)

    def and_expr(self) -> Node:
        return self.logic("and", self.not_expr)

    def logic(self, op: str, sub: Callable[[], Node]) -> Node:
        operands = [sub()]
        while self.at("word", op):
            self.next()
            operands.append(sub())
        if len(operands) == 1:
            return operands[0]
        for node in operands:
            self.condition(node)
        return self.node(op, operands[0].pos, "bool", *operands)

    def not_expr(self) -> Node:
        if not self.at("word", "not"):
            return self.comparison()
        pos = self.next().pos
        operand = self.condition(self.nested(self.not_expr))
        return self.node("not", pos, "bool", operand)

    def comparison(self) -> Node:
        left = self.sum()
        if self.at("op", *COMPARISONS):
            tok = self.next()
            right = self.sum()
            self.compatible(left, right, tok)
            op = "=" if tok.text == "==" else tok.text
            return self.node(op, tok.pos, "bool", left, right)
        if self.at("word", "not", "in"):
            pos = self.peek.pos
            if self.next().text == "not":
                self.expect("word", "in", "'in' after 'not'")
                return self.membership("not in", left, pos)
            return self.membership("in", left, pos)
        return left

    def compatible(self, left: Node, right: Node, tok: Token) -> None:
        kinds = {left.kind, right.kind}
        if "any" in kinds:
            return
        if len(kinds) > 1:
            a, b = _KIND_NAMES[left.kind], _KIND_NAMES[right.kind]
            self.fail(f"cannot compare {a} with {b}", tok.pos)
        if kinds == {"bool"} and tok.text not in ("=", "==", "!="):
            self.fail(f"'{tok.text}' cannot order conditions", tok.pos)

    def membership(self, op: str, left: Node, pos: int) -> Node:
        if self.at("list"):
            tok = self.next()
            self.lists.add(tok.text)
            if self.known_lists is not None and tok.text not in self.known_lists:
                self.fail(f"unknown list '@{tok.text}'", tok.pos)
            return self.node(op, pos, "bool", left, name=tok.text, value=())
        self.expect("op", "(", "a tuple like ('a', 'b') or a list like @name after 'in'")
        values = [self.literal()]
        while self.at("op", ",") and not self.trailing_comma():
            self.next()
            values.append(self.literal())
        if self.at("op", ","):
            self.next()
        self.expect("op", ")", "',' or ')' in the tuple")
        return self.node(op, pos, "bool", left, value=tuple(values))

    def trailing_comma(self) -> bool:
        """The ',' at hand closes the tuple: ``(1, 2,)`` (a string ``')'`` does not)."""
        after = self.tokens[self.i + 1]
        return after.kind == "op" and after.text == ")"

    def literal(self) -> Scalar:
        tok = self.next()
        if tok.kind == "op" and tok.text == "-" and self.at("num"):
            return -self.next().number
        if tok.kind in ("num", "str"):
            return tok.number if tok.kind == "num" else tok.text
        if tok.kind == "word" and tok.text in ("true", "false"):
            return tok.text == "true"
        self.fail(f"expected a literal value in the tuple, found {_describe(tok)}", tok.pos)

    def sum(self) -> Node:
        return self.arithmetic(("+", "-"), self.product)

    def product(self) -> Node:
        return self.arithmetic(("*", "/"), self.unary)

    def arithmetic(self, ops: tuple[str, ...], sub: Callable[[], Node]) -> Node:
        left = sub()
        while self.at("op", *ops):
            tok = self.next()
            right = sub()
            for node in (left, right):
                self.operand(node, "num", f"'{tok.text}'")
            left = self.node(tok.text, tok.pos, "num", left, right)
        return left

    def unary(self) -> Node:
        if not self.at("op", "-"):
            return self.primary()
        pos = self.next().pos
        operand = self.operand(self.nested(self.unary), "num", "'-'")
        if operand.op == "lit":  # a negative number
            assert isinstance(operand.value, int | float)
            return Node("lit", pos, "num", value=-operand.value)
        return self.node("neg", pos, "num", operand)

    def primary(self) -> Node:
        tok = self.next()
        if tok.kind in ("num", "str"):
            kind: Kind = "num" if tok.kind == "num" else "str"
            return Node("lit", tok.pos, kind, value=tok.number if tok.kind == "num" else tok.text)
        if tok.kind == "attr":
            return self.attribute(tok)
        if tok.kind == "list":
            self.fail(f"list '@{tok.text}' can only follow 'in' or 'not in'", tok.pos)
        if tok.kind == "word" and tok.text in ("true", "false"):
            return Node("lit", tok.pos, "bool", value=tok.text == "true")
        if tok.kind == "word" and tok.text in FUNCTIONS:
            return self.nested(lambda: self.call(tok))
        if tok.kind == "op" and tok.text == "(":
            return self.nested(self.parenthesised)
        if tok.kind == "word" and tok.text not in KEYWORDS:
            self.fail(f"unknown word '{tok.text}' (attributes are written :name:)", tok.pos)
        self.fail(f"expected a value, found {_describe(tok)}", tok.pos)

    def parenthesised(self) -> Node:
        node = self.or_expr()
        if self.at("op", ","):
            self.fail("a tuple can only follow 'in' or 'not in'")
        self.expect("op", ")", "')'")
        return node

    def attribute(self, tok: Token) -> Node:
        self.attributes.add(tok.text)
        known = self.known_attributes
        if known is not None and tok.text not in known:
            close = difflib.get_close_matches(tok.text, list(known), n=1)
            hint = f" (did you mean ':{close[0]}:'?)" if close else ""
            self.fail(f"unknown attribute ':{tok.text}:'{hint}", tok.pos)
        return Node("attr", tok.pos, "any", name=tok.text)

    def call(self, tok: Token) -> Node:
        kinds, result = FUNCTIONS[tok.text]
        self.expect("op", "(", f"'(' after {tok.text}")
        args: list[Node] = []
        while not self.at("op", ")"):
            if args:
                self.expect("op", ",", "',' or ')'")
            args.append(self.or_expr())
        self.next()
        if len(args) != len(kinds):
            self.fail(f"{tok.text}() takes {len(kinds)} argument(s), got {len(args)}", tok.pos)
        for arg, kind in zip(args, kinds, strict=True):
            if kind != "any":
                self.operand(arg, kind, f"{tok.text}()")
        return self.node("call", tok.pos, result, *args, name=tok.text)


def parse(
    text: str,
    known_attributes: Collection[str] | None = None,
    known_lists: Collection[str] | None = None,
) -> Parsed:
    """The tree of ``text``; raises ``RuleError`` (unknown names only when a ``known_*``
    collection is given)."""
    parser = Parser(text, known_attributes, known_lists)
    tree = parser.parse()
    return Parsed(tree, frozenset(parser.attributes), frozenset(parser.lists))
