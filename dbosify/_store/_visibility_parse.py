"""Tokenizer and parser for Temporal's visibility list filter language.

This module knows only the grammar; what a field means and how it becomes SQL is
:mod:`dbosify._store._visibility`. The accepted language is the subset of MySQL syntax that Temporal's
server accepts in ``ListWorkflowExecutions`` / ``CountWorkflowExecutions`` queries::

    WorkflowType = 'Order' AND (ExecutionStatus = 'Running' OR CloseTime > '2024-05-01T00:00:00Z')
    CustomerId IN ('a', 'b') AND Amount BETWEEN 10 AND 20.5 ORDER BY StartTime DESC
    WorkflowId STARTS_WITH 'order-' GROUP BY ExecutionStatus

Grammar (keywords are case-insensitive; names are case-sensitive)::

    query      := [or_expr] [ORDER BY order_term {',' order_term} | GROUP BY name {',' name}]
    or_expr    := and_expr {OR and_expr}          -- AND binds tighter than OR
    and_expr   := not_expr {AND not_expr}
    not_expr   := NOT not_expr | '(' or_expr ')' | predicate
    predicate  := name ( ('=' | '!=' | '<>' | '<' | '<=' | '>' | '>=') value
                       | [NOT] IN '(' value {',' value} ')'
                       | [NOT] BETWEEN value AND value
                       | [NOT] STARTS_WITH value
                       | IS [NOT] NULL )
    order_term := name [ASC | DESC]
    name       := identifier | `backquoted name`  (a doubled backquote stands for one)
    value      := 'string' | "string" | number | TRUE | FALSE

Strings take MySQL escapes (``\\'``, ``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\r``, ``\\b``, ``\\0``,
``\\Z``; a backslash before any other character stands for that character) and a doubled quote
stands for one quote. Anything else that SQL allows -- ``;``, comments, functions, sub-selects,
``LIKE``, ``LIMIT`` -- is rejected with a :class:`VisibilityQueryError` naming its position.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal as TypingLiteral
from typing import NoReturn, TypeAlias, TypeVar

__all__ = [
    "And",
    "Between",
    "Comparison",
    "ComparisonOp",
    "Expr",
    "Field",
    "InList",
    "IsNull",
    "Not",
    "Or",
    "OrderTerm",
    "Query",
    "StartsWith",
    "Value",
    "VisibilityQueryError",
    "parse_query",
]


class VisibilityQueryError(ValueError):
    """A visibility query that dbosify can't run; the message names the problem and where it is.

    ``position`` is the 0-based character offset in the query (its length for "end of query").
    """

    def __init__(self, query: str, position: int, problem: str) -> None:
        super().__init__(f"invalid visibility query at position {position}: {problem}")
        self.query = query
        self.position = position
        self.problem = problem


# ---------------------------------------------------------------------------------------- AST

ComparisonOp: TypeAlias = TypingLiteral["=", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Field:
    """A search attribute name as written (backquotes removed), and where it starts."""

    name: str
    pos: int


@dataclass(frozen=True)
class Value:
    """A literal: ``str`` for quoted strings, ``int``/``float`` for numbers, ``bool`` for TRUE/FALSE."""

    value: str | int | float | bool
    pos: int


@dataclass(frozen=True)
class Comparison:
    field: Field
    op: ComparisonOp  # '<>' is normalised to '!='
    value: Value


@dataclass(frozen=True)
class InList:
    field: Field
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class Between:
    field: Field
    low: Value
    high: Value
    negated: bool


@dataclass(frozen=True)
class StartsWith:
    field: Field
    prefix: Value
    negated: bool


@dataclass(frozen=True)
class IsNull:
    field: Field
    negated: bool  # IS NOT NULL


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Expr, ...]


Expr: TypeAlias = Comparison | InList | Between | StartsWith | IsNull | Not | And | Or


@dataclass(frozen=True)
class OrderTerm:
    field: Field
    descending: bool


@dataclass(frozen=True)
class Query:
    """A parsed query: ``where`` is None for an empty filter; at most one of order_by/group_by."""

    where: Expr | None
    order_by: tuple[OrderTerm, ...]
    group_by: tuple[Field, ...]


# ---------------------------------------------------------------------------------- tokenizer

_KEYWORDS = frozenset({
    "AND", "OR", "NOT", "IN", "BETWEEN", "STARTS_WITH", "IS", "NULL", "ORDER", "GROUP", "BY",
    "ASC", "DESC", "TRUE", "FALSE",
})
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">", "(", ")", ",")
_COMPARISON_OPS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
# Parentheses and NOTs nest the parser's recursion; a hostile query must get an error, not a
# RecursionError.
_MAX_DEPTH = 100

_T = TypeVar("_T")
_Kind: TypeAlias = TypingLiteral["name", "keyword", "string", "number", "op", "end"]


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str  # keyword upper-cased; operator text; name without backquotes; raw number
    pos: int
    value: str | int | float | None = None  # for strings and numbers
    quoted: bool = False  # a `backquoted` name: never a keyword

    def describe(self) -> str:
        if self.kind == "end":
            return "end of query"
        if self.kind == "string":
            return f"string {self.value!r}"
        if self.kind == "number":
            return f"number {self.text}"
        if self.kind == "name":
            return f"name {self.text}"
        return f"'{self.text}'"


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif query.startswith(("--", "/*", "#"), i):
            # MySQL would skip comments; refusing them keeps a query's meaning what it shows.
            raise VisibilityQueryError(query, i, f"comments are not allowed (found {query[i:i + 2]!r})")
        elif c in "'\"":
            text, i_end = _read_string(query, i)
            tokens.append(_Token("string", text, i, value=text))
            i = i_end
        elif c == "`":
            end = i + 1
            name = []
            while True:
                if end >= n:
                    raise VisibilityQueryError(query, i, "unterminated `backquoted` name")
                if query[end] == "`":
                    if query.startswith("``", end):  # a doubled backquote stands for one
                        name.append("`")
                        end += 2
                        continue
                    break
                name.append(query[end])
                end += 1
            if not name:
                raise VisibilityQueryError(query, i, "empty `backquoted` name")
            tokens.append(_Token("name", "".join(name), i, quoted=True))
            i = end + 1
        elif c.isalpha() or c == "_":
            end = i + 1
            while end < n and (query[end].isalnum() or query[end] == "_"):
                end += 1
            word = query[i:end]
            if word.upper() in _KEYWORDS:
                tokens.append(_Token("keyword", word.upper(), i))
            else:
                tokens.append(_Token("name", word, i))
            i = end
        elif (m := _NUMBER.match(query, i)) is not None:
            end = m.end()
            if end < n and (query[end].isalnum() or query[end] in "_."):
                raise VisibilityQueryError(query, i, f"invalid number {query[i:end + 1]!r}")
            raw = m.group()
            is_int = raw.lstrip("-").isdigit()
            tokens.append(_Token("number", raw, i, value=int(raw) if is_int else float(raw)))
            i = end
        else:
            op = next((o for o in _OPERATORS if query.startswith(o, i)), None)
            if op is None:
                raise VisibilityQueryError(query, i, f"unexpected character {c!r}")
            tokens.append(_Token("op", op, i))
            i += len(op)
    tokens.append(_Token("end", "", n))
    return tokens


def _read_string(query: str, start: int) -> tuple[str, int]:
    """The text of the string literal opening at ``start``, and the index just past it."""
    quote = query[start]
    out: list[str] = []
    i = start + 1
    while i < len(query):
        c = query[i]
        if c == "\\":
            if i + 1 >= len(query):
                break
            nxt = query[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        elif c == quote:
            if query.startswith(quote * 2, i):
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise VisibilityQueryError(query, start, "unterminated string (no closing quote)")


# ------------------------------------------------------------------------------------- parser


def parse_query(query: str) -> Query:
    """Parse a visibility query into its syntax tree, or raise :class:`VisibilityQueryError`.

    Only syntax is checked here: whether a name is a search attribute, and whether a value suits
    its type, is for the compiler.
    """
    return _Parser(query).parse()


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokenize(query)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def at_keyword(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "keyword" and tok.text in words

    def at_op(self, op: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text == op

    def fail(self, tok: _Token, problem: str) -> NoReturn:
        raise VisibilityQueryError(self.query, tok.pos, problem)

    def expect_keyword(self, word: str, after: str) -> None:
        tok = self.advance()
        if tok.kind != "keyword" or tok.text != word:
            self.fail(tok, f"expected {word} after {after}, found {tok.describe()}")

    def expect_op(self, op: str, context: str) -> None:
        tok = self.advance()
        if tok.kind != "op" or tok.text != op:
            self.fail(tok, f"expected '{op}' {context}, found {tok.describe()}")

    # query := [or_expr] [ORDER BY ... | GROUP BY ...]
    def parse(self) -> Query:
        where: Expr | None = None
        if not (self.at_keyword("ORDER", "GROUP") or self.peek().kind == "end"):
            where = self.parse_or()
        order_by: tuple[OrderTerm, ...] = ()
        group_by: tuple[Field, ...] = ()
        if self.at_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY", "ORDER")
            order_by = self.parse_list(self.parse_order_term)
        elif self.at_keyword("GROUP"):
            self.advance()
            self.expect_keyword("BY", "GROUP")
            group_by = self.parse_list(lambda: self.parse_field("after GROUP BY"))
        tok = self.peek()
        if tok.kind == "keyword" and tok.text in ("ORDER", "GROUP"):
            self.fail(tok, "a query can't have both ORDER BY and GROUP BY")
        if tok.kind != "end":
            expected = "',', ASC, DESC or end of query" if order_by else (
                "',' or end of query" if group_by else "AND, OR, ORDER BY, GROUP BY or end of query")
            hint = ""
            if tok.kind == "name" and tok.text.upper() == "LIMIT":
                hint = " (LIMIT is not supported: use the page size)"
            self.fail(tok, f"expected {expected}, found {tok.describe()}{hint}")
        return Query(where, order_by, group_by)

    def parse_list(self, item: Callable[[], _T]) -> tuple[_T, ...]:
        items = [item()]
        while self.at_op(","):
            self.advance()
            items.append(item())
        return tuple(items)

    def parse_order_term(self) -> OrderTerm:
        field = self.parse_field("after ORDER BY")
        descending = False
        if self.at_keyword("ASC", "DESC"):
            descending = self.advance().text == "DESC"
        return OrderTerm(field, descending)

    def parse_or(self) -> Expr:
        operands = [self.parse_and()]
        while self.at_keyword("OR"):
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Expr:
        operands = [self.parse_not()]
        while self.at_keyword("AND"):
            self.advance()
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_not(self) -> Expr:
        tok = self.peek()
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail(tok, f"the query nests NOT or parentheses more than {_MAX_DEPTH} deep")
        try:
            if self.at_keyword("NOT"):
                self.advance()
                return Not(self.parse_not())
            if self.at_op("("):
                self.advance()
                inner = self.parse_or()
                self.expect_op(")", "(or AND, OR) to close the '(' at position "
                               f"{tok.pos}")
                return inner
            return self.parse_predicate()
        finally:
            self.depth -= 1

    def parse_field(self, context: str) -> Field:
        tok = self.advance()
        if tok.kind == "name":
            return Field(tok.text, tok.pos)
        problem = f"expected a search attribute name {context}, found {tok.describe()}"
        if tok.kind == "keyword":
            problem += f" (write `{tok.text}` in backquotes to use it as a name)"
        elif tok.kind in ("string", "number"):
            problem += " (the name goes on the left of the operator)"
        self.fail(tok, problem)

    def parse_predicate(self) -> Expr:
        field = self.parse_field("at the start of a condition")
        tok = self.advance()
        if tok.kind == "op" and tok.text in _COMPARISON_OPS:
            op: ComparisonOp = "!=" if tok.text == "<>" else tok.text  # type: ignore[assignment]
            return Comparison(field, op, self.parse_value(f"'{tok.text}'"))
        negated = False
        if tok.kind == "keyword" and tok.text == "NOT":
            negated = True
            tok = self.advance()
            if not (tok.kind == "keyword" and tok.text in ("IN", "BETWEEN", "STARTS_WITH")):
                self.fail(tok, f"expected IN, BETWEEN or STARTS_WITH after NOT, found "
                               f"{tok.describe()}")
        if tok.kind == "keyword" and tok.text == "IN":
            self.expect_op("(", "after IN")
            values = self.parse_list(lambda: self.parse_value("IN ("))
            self.expect_op(")", "or ',' in the IN list")
            return InList(field, values, negated)
        if tok.kind == "keyword" and tok.text == "BETWEEN":
            low = self.parse_value("BETWEEN")
            self.expect_keyword("AND", "BETWEEN's first value")
            return Between(field, low, self.parse_value("BETWEEN ... AND"), negated)
        if tok.kind == "keyword" and tok.text == "STARTS_WITH":
            return StartsWith(field, self.parse_value("STARTS_WITH"), negated)
        if tok.kind == "keyword" and tok.text == "IS":
            is_not = self.at_keyword("NOT")
            if is_not:
                self.advance()
            self.expect_keyword("NULL", "IS NOT" if is_not else "IS")
            return IsNull(field, is_not)
        hint = " (LIKE is not supported: use STARTS_WITH)" if tok.text.upper() == "LIKE" else ""
        self.fail(tok, f"expected an operator after {field.name} (=, !=, <, <=, >, >=, IN, "
                       f"BETWEEN, STARTS_WITH, IS), found {tok.describe()}{hint}")

    def parse_value(self, after: str) -> Value:
        tok = self.advance()
        if tok.kind in ("string", "number"):
            assert tok.value is not None
            return Value(tok.value, tok.pos)
        if tok.kind == "keyword" and tok.text in ("TRUE", "FALSE"):
            return Value(tok.text == "TRUE", tok.pos)
        problem = f"expected a value after {after}, found {tok.describe()}"
        if tok.kind == "keyword" and tok.text == "NULL":
            problem += " (use IS NULL or IS NOT NULL)"
        elif tok.kind == "name":
            problem += f" (did you forget to quote '{tok.text}'?)"
        self.fail(tok, problem)

