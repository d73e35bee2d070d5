"""A small subset of the PowerShell language, for statements the statement table lacks.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``). The
distro profile's steps and imageprep's facts script use variables, ``if``/``foreach``/
``while`` and pipelines; modelling each whole script as one pattern would test nothing.
This module evaluates that subset with PowerShell's semantics where the scripts rely
on them, and refuses everything else as "not recognized", like the statement table:

* statements: ``if (...) {...} elseif (...) {...} else {...}``, ``foreach ($x in ...)``,
  ``while (...)``, ``break``, ``continue``, ``$x = ...``, ``$x += ...``, pipelines;
* expressions: '...' and "..." (``$var``, ``$env:X``, ``$(...)`` expanded), numbers
  (``1MB``), ``$true``/``$false``/``$null``, ``@(...)``, ``(...)``, ``$(...)``, ``a, b``,
  members and methods (``$p.HasExited``, ``$s.Trim()``, member enumeration on arrays),
  ``[Type]::Member``, casts ``[int]``, ``-not``/``!``, ``+ - * /``, ``-eq -ne -gt -ge
  -lt -le -like -notlike -match -notmatch -contains -notcontains -join``, ``-and -or``;
* pipelines of commands from :mod:`tests.winrm_server.cmdlets` and expressions.

Comparisons follow PowerShell: the left operand decides the type, strings compare
without regard to case, an array on the left filters. Blocks run statement by statement
through :func:`tests.winrm_server.powershell.run_statement`, so statements inside them
may come from the statement table too.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.winrm_server.powershell import Session


class NotModelled(Exception):
    """The statement uses something outside the subset (reported as not recognized)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class LoopBreak(Exception):
    """``break``"""


class LoopContinue(Exception):
    """``continue``"""


# -- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tok:
    kind: str  # STR DSTR NUM VAR TYPE WORD DASH PUNCT NL EOF
    value: str
    start: int
    end: int
    space: bool  # whitespace before it


_PUNCT = (
    "@(",
    "@{",
    "$(",
    "::",
    "+=",
    "(",
    ")",
    "{",
    "}",
    ",",
    "|",
    ";",
    "=",
    "!",
    "+",
    "-",
    "*",
    "/",
    ".",
    "&",
)
_WORD_STOP = set(" \t\r\n(){},;|'\"$@=[")
_NUM = re.compile(r"\d+(?:\.\d+)?(?:kb|mb|gb|tb)?(?![\w.\\:])", re.IGNORECASE)
_TYPE = re.compile(r"\[([A-Za-z_][\w.]*)\]")
_VAR = re.compile(r"\$(?:env:\w+|[A-Za-z_]\w*|_)", re.IGNORECASE)
_DASH = re.compile(r"-[A-Za-z]\w*")
_IDENT = re.compile(r"[A-Za-z_]\w*")


def _member_position(tokens: list[Tok], space: bool) -> bool:
    """Whether a ``.`` here is member access: right after a value, without a space."""
    if space or not tokens:
        return False
    prev = tokens[-1]
    if prev.kind in ("VAR", "TYPE") or (prev.kind == "PUNCT" and prev.value == ")"):
        return True
    return prev.kind == "WORD" and len(tokens) > 1 and tokens[-2].value in (".", "::")


def tokenize(text: str) -> list[Tok]:
    """Tokens of one statement; raises NotModelled on syntax outside the subset."""
    tokens: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        space = False
        while i < n and text[i] in " \t":
            i += 1
            space = True
        if i >= n:
            break
        i = _token(text, i, tokens, space)
    tokens.append(Tok("EOF", "", n, n, False))
    return tokens


def _token(text: str, start: int, tokens: list[Tok], space: bool) -> int:
    """Append the token at ``start`` (a comment appends none); where it ends."""
    i, n, c = start, len(text), text[start]
    after_member = bool(tokens) and tokens[-1].value in (".", "::") and tokens[-1].kind == "PUNCT"
    if after_member:
        m = _IDENT.match(text, i)
        if m is None:
            raise NotModelled(text[i : i + 10])
        i = m.end()
        tokens.append(Tok("WORD", m.group(0), start, i, space))
    elif c == "#" and (space or not tokens or tokens[-1].kind == "NL"):
        while i < n and text[i] != "\n":
            i += 1
    elif c in "\r\n":
        i += 1
        tokens.append(Tok("NL", "\n", start, i, space))
    elif c == "'":
        i = _single_quoted(text, i, tokens, space)
    elif c == '"':
        i = _double_quoted(text, i, tokens, space)
    elif c == "$" and text[i + 1 : i + 2] != "(":
        m = _VAR.match(text, i)
        if m is None:
            raise NotModelled(text[i : i + 10])
        i = m.end()
        tokens.append(Tok("VAR", m.group(0)[1:], start, i, space))
    elif c == "[" and (m := _TYPE.match(text, i)) is not None:
        i = m.end()
        tokens.append(Tok("TYPE", m.group(1), start, i, space))
    elif (
        c == "-"
        and (m := _DASH.match(text, i)) is not None
        and (space or not tokens or tokens[-1].kind in ("PUNCT", "NL"))
    ):
        i = m.end()
        tokens.append(Tok("DASH", m.group(0).lower(), start, i, space))
    elif c.isdigit() and (m := _NUM.match(text, i)) is not None:
        i = m.end()
        tokens.append(Tok("NUM", m.group(0), start, i, space))
    elif c == "." and _member_position(tokens, space):
        i += 1
        tokens.append(Tok("PUNCT", ".", start, i, space))
    elif (p := next((p for p in _PUNCT if text.startswith(p, i)), None)) is not None and not (
        p in "./" and i + 1 < n and (text[i + 1].isalnum() or text[i + 1] == "\\")
    ):
        i += len(p)
        tokens.append(Tok("PUNCT", p, start, i, space))
    else:
        while i < n and text[i] not in _WORD_STOP:
            i += 1
        if i == start:
            raise NotModelled(text[i : i + 10])
        tokens.append(Tok("WORD", text[start:i], start, i, space))
    return i


def _double_quoted(text: str, i: int, tokens: list[Tok], space: bool) -> int:
    """A "..." string (backtick escapes kept as written for the expander); where it ends."""
    start, n = i, len(text)
    i += 1
    while i < n and text[i] != '"':
        i += 2 if text[i] == "`" else 1
    i += 1
    tokens.append(Tok("DSTR", text[start + 1 : i - 1], start, i, space))
    return i


def _single_quoted(text: str, i: int, tokens: list[Tok], space: bool) -> int:
    start, i = i, i + 1
    value: list[str] = []
    while i < len(text):
        if text[i] == "'" and text[i + 1 : i + 2] == "'":
            value.append("'")
            i += 2
        elif text[i] == "'":
            break
        else:
            value.append(text[i])
            i += 1
    else:
        raise NotModelled("unterminated string")
    tokens.append(Tok("STR", "".join(value), start, i + 1, space))
    return i + 1


# -- parsing ------------------------------------------------------------------------------

Node = Callable[["Session"], Any]
Element = Callable[["Session", "list[Any] | None"], "list[Any]"]


@dataclass(frozen=True)
class Pipeline:
    """Elements joined by ``|``. ``expression`` is set when it is one bare expression,
    whose value an assignment keeps as is (``$a = @()`` stays an empty array), where
    command output is unrolled (one object, or an array of several, or $null)."""

    elements: tuple[Element, ...]
    expression: Node | None

    def run(self, session: Session, pipe_input: list[Any] | None = None) -> list[Any]:
        values = pipe_input
        for element in self.elements:
            values = element(session, values)
        return list(values or [])

    def value(self, session: Session) -> Any:
        if self.expression is not None:
            return self.expression(session)
        return _unwrap(self.run(session))


_STOPPERS = (")", "}", "|", ";")


class Parser:
    """Recursive descent over one statement's tokens; nodes are closures over Session."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> Tok:
        return self.tokens[self.pos]

    def peek(self, offset: int = 1) -> Tok:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def next(self) -> Tok:
        tok = self.tok
        self.pos += 1
        return tok

    def at(self, kind: str, value: str | None = None) -> bool:
        tok = self.tok
        return tok.kind == kind and (value is None or tok.value.lower() == value)

    def expect(self, kind: str, value: str | None = None) -> Tok:
        if not self.at(kind, value):
            raise NotModelled(f"{self.tok.value or self.tok.kind} (expected {value or kind})")
        return self.next()

    def skip_newlines(self) -> None:
        while self.at("NL"):
            self.next()

    def end(self) -> None:
        while self.at("NL") or self.at("PUNCT", ";"):
            self.next()
        self.expect("EOF")

    def bracketed(self) -> str:
        """Skip a region opened by the current token; the source text inside it."""
        opener = self.next()
        depth = 1
        while depth:
            tok = self.next()
            if tok.kind == "EOF":
                raise NotModelled(f"unbalanced {opener.value}")
            if tok.kind == "PUNCT" and tok.value in ("(", "@(", "$(", "{", "@{"):
                depth += 1
            elif tok.kind == "PUNCT" and tok.value in (")", "}"):
                depth -= 1
        return self.text[opener.end : self.tokens[self.pos - 1].start]

    # -- pipelines and commands

    def pipeline(self) -> Pipeline:
        elements = [self.element()]
        while self.at("PUNCT", "|"):
            self.next()
            self.skip_newlines()
            elements.append(self.element())
        expression = getattr(elements[0], "expression", None) if len(elements) == 1 else None
        return Pipeline(tuple(elements), expression)

    def element(self) -> Element:
        if self.at("WORD"):
            return self.command()
        if self.at("PUNCT", "&"):
            self.next()
            return self.command()
        expr = self.expression()

        def run(session: Session, pipe_input: list[Any] | None) -> list[Any]:
            return _as_list(expr(session))

        run.expression = expr  # type: ignore[attr-defined]
        return run

    def command(self) -> Element:
        name_node = self.argument_item()
        args: list[tuple[str | None, Node | None]] = []
        while not (
            self.at("EOF")
            or self.at("NL")
            or (self.tok.kind == "PUNCT" and self.tok.value in _STOPPERS)
        ):
            if self.at("DASH"):
                args.append((self.next().value[1:], None))
            else:
                args.append((None, self.argument()))
        from tests.winrm_server.cmdlets import invoke_command

        def run(session: Session, pipe_input: list[Any] | None) -> list[Any]:
            return invoke_command(session, to_text(name_node(session)), args, pipe_input)

        return run

    def argument(self) -> Node:
        """An argument in command mode: bare words are strings; commas make arrays."""
        items = [self.argument_item()]
        while self.at("PUNCT", ","):
            self.next()
            self.skip_newlines()
            items.append(self.argument_item())
        if len(items) == 1:
            return items[0]
        return lambda s: [item(s) for item in items]

    def argument_item(self) -> Node:
        if self.at("WORD"):
            word = self.next().value
            return lambda s: word
        if self.at("PUNCT", "{"):
            block = ScriptBlock(self.bracketed())
            return lambda s: block
        return self.postfix()

    # -- expressions, lowest precedence first

    _COMPARE = (
        "-eq",
        "-ne",
        "-gt",
        "-ge",
        "-lt",
        "-le",
        "-like",
        "-notlike",
        "-match",
        "-notmatch",
        "-contains",
        "-notcontains",
        "-in",
        "-notin",
        "-join",
    )

    def expression(self, *, arrays: bool = True) -> Node:
        left = self.comparison(arrays)
        while self.at("DASH") and self.tok.value in ("-and", "-or"):
            op = self.next().value
            self.skip_newlines()
            left = _logical(op, left, self.comparison(arrays))
        return left

    def comparison(self, arrays: bool) -> Node:
        left = self.additive(arrays)
        while self.at("DASH") and self.tok.value in self._COMPARE:
            op = self.next().value
            left = _compare(op, left, self.additive(arrays))
        return left

    def additive(self, arrays: bool) -> Node:
        left = self.multiplicative(arrays)
        while self.at("PUNCT", "+") or self.at("PUNCT", "-"):
            op = self.next().value
            left = _arith(op, left, self.multiplicative(arrays))
        return left

    def multiplicative(self, arrays: bool) -> Node:
        left = self.array() if arrays else self.unary()
        while self.at("PUNCT", "*") or self.at("PUNCT", "/"):
            op = self.next().value
            left = _arith(op, left, self.array() if arrays else self.unary())
        return left

    def array(self) -> Node:
        items = [self.unary()]
        while self.at("PUNCT", ","):
            self.next()
            self.skip_newlines()
            items.append(self.unary())
        if len(items) == 1:
            return items[0]
        return lambda s: [item(s) for item in items]

    def unary(self) -> Node:
        if self.at("DASH", "-not") or self.at("PUNCT", "!"):
            self.next()
            operand = self.unary()
            return lambda s: not truthy(operand(s))
        if self.at("PUNCT", "-"):
            self.next()
            negated = self.unary()
            return lambda s: -_number(negated(s))
        if self.at("TYPE") and self.peek().value != "::":
            type_name = self.next().value
            cast = self.unary()
            from tests.winrm_server.cmdlets import cast_to

            return lambda s: cast_to(type_name, cast(s))
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while self.tok.kind == "PUNCT" and self.tok.value in (".", "::") and not self.tok.space:
            self.next()
            member = self.expect("WORD").value
            if self.at("PUNCT", "(") and not self.tok.space:
                node = _method(node, member, self.call_arguments())
            else:
                node = _member(node, member)
        return node

    def call_arguments(self) -> list[Node]:
        self.expect("PUNCT", "(")
        out: list[Node] = []
        self.skip_newlines()
        while not self.at("PUNCT", ")"):
            out.append(self.expression(arrays=False))
            self.skip_newlines()
            if self.at("PUNCT", ","):
                self.next()
                self.skip_newlines()
        self.next()
        return out

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind in ("STR", "NUM", "DSTR", "VAR"):
            self.next()
            if tok.kind == "STR":
                return lambda s: tok.value
            if tok.kind == "NUM":
                number = parse_number(tok.value)
                return lambda s: number
            if tok.kind == "DSTR":
                return lambda s: expand_string(s, tok.value)
            return lambda s: get_variable(s, tok.value)
        if tok.kind == "TYPE":
            self.next()
            self.expect("PUNCT", "::")
            member = self.expect("WORD").value
            from tests.winrm_server.cmdlets import static_member

            if self.at("PUNCT", "(") and not self.tok.space:
                call_args = self.call_arguments()
                return lambda s: static_member(s, tok.value, member, [a(s) for a in call_args])
            return lambda s: static_member(s, tok.value, member, None)
        if tok.kind == "PUNCT" and tok.value == "(":
            inner = Parser(self.bracketed())
            inner.skip_newlines()
            pipeline = inner.pipeline()
            inner.end()
            return pipeline.value
        if tok.kind == "PUNCT" and tok.value in ("@(", "$("):
            force_array = tok.value == "@("
            text = self.bracketed()
            return lambda s: _subexpression(s, text, force_array=force_array)
        if tok.kind == "PUNCT" and tok.value == "{":
            block = ScriptBlock(self.bracketed())
            return lambda s: block
        if tok.kind == "PUNCT" and tok.value == "@{":
            return _hashtable(self.bracketed())
        raise NotModelled(tok.value or tok.kind)


def _hashtable(text: str) -> Node:
    """``@{ Key = value; Other = value }``: a dict (keys kept as written)."""
    from tests.winrm_server.powershell import split_statements

    entries: list[tuple[str, Node]] = []
    for entry in split_statements(text):
        key, equals, value = entry.partition("=")
        if not equals or not _IDENT.fullmatch(key.strip()):
            raise NotModelled(f"hashtable entry {entry[:30]}")
        parser = Parser(value)
        pipeline = parser.pipeline()
        parser.end()
        entries.append((key.strip(), pipeline.value))
    return lambda s: {key: node(s) for key, node in entries}


@dataclass(frozen=True)
class ScriptBlock:
    text: str

    def invoke(self, session: Session, dollar_underscore: Any) -> list[Any]:
        saved = session.variables.get("_")
        session.variables["_"] = dollar_underscore
        try:
            return capture(session, lambda: run_block(session, self.text))
        finally:
            session.variables["_"] = saved


# -- statements ---------------------------------------------------------------------------


def execute(session: Session, text: str) -> None:
    """Run one statement of the subset; raises NotModelled for anything else."""
    parser = Parser(text)
    head = parser.tok
    keyword = head.value.lower() if head.kind == "WORD" else ""
    if keyword == "if":
        _if(session, parser)
    elif keyword == "foreach" and parser.peek().value == "(":
        _foreach(session, parser)
    elif keyword == "while":
        _while(session, parser)
    elif keyword in ("break", "continue") and parser.peek().kind == "EOF":
        raise LoopBreak if keyword == "break" else LoopContinue
    elif head.kind == "VAR" and parser.peek().value in ("=", "+="):
        name = parser.next().value
        op = parser.next().value
        parser.skip_newlines()
        pipeline = parser.pipeline()
        parser.end()
        value = pipeline.value(session)
        if op == "+=":
            value = _add(get_variable(session, name), value)
        if name.lower() != "null":
            session.variables[name] = value
    else:
        pipeline = parser.pipeline()
        parser.end()
        for value in pipeline.run(session):
            session.emit(value)


def _condition(parser: Parser) -> Node:
    parser.expect("PUNCT", "(")
    parser.skip_newlines()
    pipeline = parser.pipeline()
    parser.skip_newlines()
    parser.expect("PUNCT", ")")
    return lambda s: truthy(pipeline.value(s))


def _block(parser: Parser) -> str:
    parser.skip_newlines()
    if not parser.at("PUNCT", "{"):
        raise NotModelled(f"{parser.tok.value} (expected a block)")
    return parser.bracketed()


def _if(session: Session, parser: Parser) -> None:
    parser.next()
    branches: list[tuple[Node | None, str]] = [(_condition(parser), _block(parser))]
    while parser.at("WORD", "elseif") or parser.at("WORD", "else"):
        if parser.next().value.lower() == "elseif":
            branches.append((_condition(parser), _block(parser)))
        else:
            branches.append((None, _block(parser)))
    parser.end()
    for condition, body in branches:
        if condition is None or condition(session):
            run_block(session, body)
            return


def _foreach(session: Session, parser: Parser) -> None:
    parser.next()
    parser.expect("PUNCT", "(")
    name = parser.expect("VAR").value
    parser.expect("WORD", "in")
    source = parser.pipeline()
    parser.expect("PUNCT", ")")
    body = _block(parser)
    parser.end()
    for item in _as_list(source.value(session)):
        session.variables[name] = item
        try:
            run_block(session, body)
        except LoopContinue:
            continue
        except LoopBreak:
            break


def _while(session: Session, parser: Parser) -> None:
    parser.next()
    condition = _condition(parser)
    body = _block(parser)
    parser.end()
    while condition(session):
        session.process.check()
        try:
            run_block(session, body)
        except LoopContinue:
            continue
        except LoopBreak:
            break


def run_block(session: Session, text: str) -> None:
    from tests.winrm_server.powershell import run_statement, split_statements

    for statement in split_statements(text):
        run_statement(session, statement)


def capture(session: Session, action: Callable[[], None]) -> list[Any]:
    """Run ``action`` with its pipeline output collected instead of written."""
    collected: list[Any] = []
    session.captures.append(collected)
    try:
        action()
    finally:
        session.captures.pop()
    return collected


def _subexpression(session: Session, inner: str, *, force_array: bool) -> Any:
    values = capture(session, lambda: run_block(session, inner))
    return values if force_array else _unwrap(values)


# -- values -------------------------------------------------------------------------------


def parse_number(text: str) -> int | float:
    suffix = text[-2:].lower()
    scale = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}.get(suffix, 1)
    digits = text[:-2] if scale != 1 else text
    value: int | float = float(digits) if "." in digits else int(digits)
    return value * scale


def get_variable(session: Session, name: str) -> Any:
    lowered = name.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "null":
        return None
    if lowered.startswith("env:"):
        env = {k.casefold(): v for k, v in session.process.env.items()}
        return env.get(lowered[4:].casefold())
    if lowered == "lastexitcode":
        return session.last_exit_code
    for key, value in session.variables.items():
        if key.lower() == lowered:
            return value
    return None


_EXPANSION = re.compile(
    r"\$\((?P<sub>[^()]*(?:\([^()]*\)[^()]*)*)\)|\$(?P<var>env:\w+|\w+)", re.IGNORECASE
)


def expand_string(session: Session, raw: str) -> str:
    """A double-quoted string: backtick escapes, ``$var``, ``$env:X`` and ``$(...)``."""
    text = re.sub(
        r"`(.)", lambda c: {"n": "\n", "r": "\r", "t": "\t"}.get(c[1], "\x00" + c[1]), raw
    )

    def one(m: re.Match[str]) -> str:
        if m["sub"] is not None:
            return to_text(_subexpression(session, m["sub"], force_array=False))
        return to_text(get_variable(session, m["var"]))

    out = _EXPANSION.sub(one, text)
    return out.replace("\x00", "")


def to_text(value: Any) -> str:
    """How PowerShell turns a value into a string (``+`` on strings, interpolation)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return " ".join(to_text(v) for v in value)
    return str(value)


def truthy(value: Any) -> bool:
    if isinstance(value, list):
        if len(value) == 1:
            return truthy(value[0])
        return bool(value)
    if isinstance(value, str):
        return value != ""
    return bool(value) if value is not None else False


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _unwrap(values: list[Any]) -> Any:
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if value is None:
        return 0
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise NotModelled(f"[number] of {text!r}") from None


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, list):
        return left + _as_list(right)
    if left is None:
        return right
    if isinstance(left, str):
        return left + to_text(right)
    return _number(left) + _number(right)


def _arith(op: str, left_node: Node, right_node: Node) -> Node:
    def run(s: Session) -> Any:
        left, right = left_node(s), right_node(s)
        if op == "+":
            return _add(left, right)
        if op == "*" and isinstance(left, str):
            return left * int(_number(right))  # PowerShell repeats a string left operand
        a, b = _number(left), _number(right)
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        result = a / b
        return int(result) if result.is_integer() and isinstance(a, int) else result

    return run


def _logical(op: str, left: Node, right: Node) -> Node:
    if op == "-and":
        return lambda s: truthy(left(s)) and truthy(right(s))
    return lambda s: truthy(left(s)) or truthy(right(s))


def _like(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value.casefold(), pattern.casefold())


def _scalar_compare(op: str, left: Any, right: Any) -> bool:
    if isinstance(left, str) or (left is None and isinstance(right, str)):
        a: Any = to_text(left).casefold()
        b: Any = to_text(right).casefold()
    elif isinstance(left, bool):
        a, b = left, truthy(right)
    elif isinstance(left, int | float):
        a, b = left, _number(right)
    else:
        a, b = left, right
    if op == "-eq":
        return bool(a == b)
    if op == "-ne":
        return bool(a != b)
    if op in ("-like", "-notlike"):
        return _like(to_text(left), to_text(right)) == (op == "-like")
    if op in ("-match", "-notmatch"):
        found = re.search(to_text(right), to_text(left), re.IGNORECASE) is not None
        return found == (op == "-match")
    if a is None or b is None:
        return False
    return bool({"-gt": a > b, "-ge": a >= b, "-lt": a < b, "-le": a <= b}[op])


def _compare(op: str, left_node: Node, right_node: Node) -> Node:
    def run(s: Session) -> Any:
        left, right = left_node(s), right_node(s)
        if op == "-join":
            return to_text(right).join(to_text(v) for v in _as_list(left))
        if op in ("-contains", "-notcontains"):
            found = any(_scalar_compare("-eq", item, right) for item in _as_list(left))
            return found == (op == "-contains")
        if op in ("-in", "-notin"):
            found = any(_scalar_compare("-eq", item, left) for item in _as_list(right))
            return found == (op == "-in")
        if isinstance(left, list):
            return [item for item in left if _scalar_compare(op, item, right)]
        return _scalar_compare(op, left, right)

    return run


def _member(target_node: Node, name: str) -> Node:
    from tests.winrm_server.cmdlets import member_of

    return lambda s: member_of(target_node(s), name)


def _method(target_node: Node, name: str, arg_nodes: list[Node]) -> Node:
    from tests.winrm_server.cmdlets import call_method

    return lambda s: call_method(s, target_node(s), name, [a(s) for a in arg_nodes])


def iterate(value: Any) -> Iterator[Any]:
    """The items of a value as a pipeline would send them ($null: none)."""
    yield from _as_list(value)
