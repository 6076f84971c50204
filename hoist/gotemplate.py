"""Go's text/template, as docker users type it in ``--format``.

The language is Go's (``text/template`` and ``text/template/parse``): actions ``{{...}}`` with
``{{-``/``-}}`` trim markers and ``{{/* comments */}}``; pipelines ``a | b`` (the value of each
command is the last argument of the next); fields ``.A.B``, variables ``$``/``$x`` and chains on
them or on ``(pipelines)``; ``{{$x := ...}}`` and ``{{$x = ...}}``; ``if``/``else if``/``else``,
``range`` (slices, maps in key order, integers, ``$i, $e :=``, ``{{break}}``/``{{continue}}``),
``with``/``else with``, ``define``/``template``/``block``; Go's builtins (``and or not len index
slice print printf println eq ne lt le gt ge html js urlquery call``) and docker's
(``json split join title lower upper pad truncate``, from docker/cli's ``templates`` package).

Values are Python's JSON values seen as Go sees ``interface{}`` data decoded from JSON:
``dict`` is a map (a missing key prints ``<no value>``; ``range`` walks sorted keys), ``list`` a
slice, ``None`` a nil interface (``<nil>``). :class:`Struct` is a dict that stands for a Go struct
(a missing field is an error, ``%v`` prints ``{a b}``), for formatters that mirror docker's typed
contexts. Printing follows ``fmt`` (floats as ``%v`` does, maps as ``map[k:v]``), ``json`` follows
``encoding/json`` without HTML escaping, as docker's does.

:func:`format_rows` is docker's formatter (``cli/command/formatter``): ``table`` prefix, ``\\t`` and
``\\n`` expanded, a header row rendered from the header names, columns aligned as Go's tabwriter
(minwidth 10, padding 3) aligns them.

Errors::

    TemplateError       ValueError; the message is Go's ("template: :1: ...")
    ├── ParseError      the template is not valid (docker: "Template parsing error: ...")
    └── ExecError       executing it failed (a field of a struct that does not exist, a bad call)
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "NO_VALUE",
    "ExecError",
    "ParseError",
    "Struct",
    "Template",
    "TemplateError",
    "format_rows",
    "go_json",
    "go_sprint",
    "parse",
    "render",
    "tabwrite",
]

MAX_DEPTH = 100  # nested template calls and parentheses (Go allows 100000; Python's stack does not)


class TemplateError(ValueError):
    """A template that cannot be parsed or executed; the message is Go's."""


class ParseError(TemplateError):
    pass


class ExecError(TemplateError):
    pass


class _NoValue:
    """Go's invalid reflect.Value: what a missing map key or a field of nothing evaluates to."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Any = _NoValue()


class Struct(dict[str, Any]):
    """A dict standing for a Go struct named ``go_type``: a missing field is an error."""

    def __init__(self, go_type: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.go_type = go_type


# ---------------------------------------------------------------------------------------------
# Lexer (text/template/parse/lex.go)

_KEYWORDS = frozenset({"block", "break", "continue", "define", "else", "end", "if", "range", "nil",
                       "template", "with"})
_SPACE = " \t\r\n"


@dataclass
class _Item:
    kind: str  # text left right space ident keyword field var dot string rawstring char number bool nil
    #            pipe lparen rparen declare assign comma eof
    val: str
    pos: int


class _Lexer:
    def __init__(self, text: str, name: str) -> None:
        self.text, self.name = text, name
        self.items: list[_Item] = []

    def error(self, pos: int, msg: str) -> ParseError:
        return ParseError(f"template: {self.name}:{self.text.count(chr(10), 0, pos) + 1}: {msg}")

    def run(self) -> list[_Item]:
        text, pos = self.text, 0
        while True:
            start = text.find("{{", pos)
            if start < 0:
                if pos < len(text):
                    self.items.append(_Item("text", text[pos:], pos))
                break
            trim_left = text.startswith("{{-", start) and start + 3 < len(text) and text[start + 3] in _SPACE
            end_text = start
            if trim_left:
                while end_text > pos and text[end_text - 1] in _SPACE:
                    end_text -= 1
            if end_text > pos:
                self.items.append(_Item("text", text[pos:end_text], pos))
            pos = self._action(start, trim_left)
        self.items.append(_Item("eof", "", len(text)))
        return self.items

    def _right_at(self, i: int) -> tuple[bool, int]:
        """Whether a right delimiter (with its trim marker) starts at i, and its length."""
        text = self.text
        if text.startswith(" -}}", i) or text.startswith("\t-}}", i) or text.startswith("\r-}}", i) \
                or text.startswith("\n-}}", i):
            return True, 4
        if text.startswith("}}", i):
            return True, 2
        return False, 0

    def _after_right(self, i: int, length: int) -> int:
        end = i + length
        if length == 4:  # trim marker: skip the whitespace that follows
            while end < len(self.text) and self.text[end] in _SPACE:
                end += 1
        return end

    def _action(self, start: int, trim_left: bool) -> int:
        text, items = self.text, self.items
        i = start + (4 if trim_left else 2)
        # a comment must follow the delimiter at once and end just before the closing one
        if text.startswith("/*", i):
            close = text.find("*/", i + 2)
            if close < 0:
                raise self.error(start, "unclosed comment")
            j = close + 2
            is_right, length = self._right_at(j)
            if not is_right:
                raise self.error(start, "comment ends before closing delimiter")
            return self._after_right(j, length)
        items.append(_Item("left", "{{", start))
        depth = 0
        while True:
            is_right, length = self._right_at(i)
            if is_right and depth == 0:
                items.append(_Item("right", "}}", i))
                return self._after_right(i, length)
            if i >= len(text):
                raise self.error(start, "unclosed action")
            c = text[i]
            if c in _SPACE:
                j = i + 1  # a run of spaces, up to a " -}}" that closes the action
                while j < len(text) and text[j] in _SPACE and self._right_at(j)[1] != 4:
                    j += 1
                items.append(_Item("space", text[i:j], i))
                i = j
                continue
            if c == "}" and depth > 0:
                raise self.error(i, "unclosed left paren")
            if c == "=":
                items.append(_Item("assign", "=", i))
                i += 1
            elif c == ":":
                if not text.startswith(":=", i):
                    raise self.error(i, "expected :=")
                items.append(_Item("declare", ":=", i))
                i += 2
            elif c == "|":
                items.append(_Item("pipe", "|", i))
                i += 1
            elif c == '"':
                i = self._quote(i)
            elif c == "`":
                close = text.find("`", i + 1)
                if close < 0:
                    raise self.error(i, "unterminated raw quoted string")
                items.append(_Item("rawstring", text[i:close + 1], i))
                i = close + 1
            elif c == "'":
                i = self._char(i)
            elif c == "$":
                j = self._ident_end(i + 1)
                items.append(_Item("var", text[i:j], i))
                i = j
            elif c == "." and i + 1 < len(text) and text[i + 1].isdigit():
                i = self._number(i)
            elif c == ".":
                j = self._ident_end(i + 1)
                items.append(_Item("field" if j > i + 1 else "dot", text[i:j], i))
                i = j
            elif c in "+-" or c.isdigit():
                i = self._number(i)
            elif c.isalpha() or c == "_":
                j = self._ident_end(i)
                word = text[i:j]
                if word in ("true", "false"):
                    kind = "bool"
                elif word == "nil":
                    kind = "nil"
                elif word in _KEYWORDS:
                    kind = "keyword"
                else:
                    kind = "ident"
                items.append(_Item(kind, word, i))
                i = j
            elif c == "(":
                items.append(_Item("lparen", "(", i))
                depth += 1
                i += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise self.error(i, "unexpected right paren")
                items.append(_Item("rparen", ")", i))
                i += 1
            elif c == ",":
                items.append(_Item("comma", ",", i))
                i += 1
            else:
                raise self.error(i, f"unrecognized character in action: {_quote_rune(c)}")

    def _ident_end(self, i: int) -> int:
        text = self.text
        while i < len(text) and (text[i].isalnum() or text[i] == "_"):
            i += 1
        return i

    def _quote(self, i: int) -> int:
        text, j = self.text, i + 1
        while True:
            if j >= len(text) or text[j] == "\n":
                raise self.error(i, "unterminated quoted string")
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == '"':
                break
            j += 1
        self.items.append(_Item("string", text[i:j + 1], i))
        return j + 1

    def _char(self, i: int) -> int:
        text, j = self.text, i + 1
        while True:
            if j >= len(text) or text[j] == "\n":
                raise self.error(i, "unterminated character constant")
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == "'":
                break
            j += 1
        self.items.append(_Item("char", text[i:j + 1], i))
        return j + 1

    def _number(self, i: int) -> int:
        text, j = self.text, i
        if j < len(text) and text[j] in "+-":
            j += 1
        while j < len(text) and (text[j].isalnum() or text[j] in "._" or
                                 (text[j] in "+-" and text[j - 1] in "eEpP")):
            j += 1
        self.items.append(_Item("number", text[i:j], i))
        return j


def _quote_rune(c: str) -> str:
    """Go's %#U."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


def _go_quote(s: str) -> str:
    """Go's %q of a string (strconv.Quote) for names in messages."""
    return _json_string(s)


# ---------------------------------------------------------------------------------------------
# Nodes (text/template/parse/node.go)


@dataclass
class _Node:
    pos: int
    src: str  # the node's text, for "executing ... at <src>" messages


@dataclass
class _Text(_Node):
    text: str = ""


@dataclass
class _Field(_Node):
    idents: list[str] = field(default_factory=list)


@dataclass
class _Variable(_Node):
    idents: list[str] = field(default_factory=list)  # [name, field, field...]


@dataclass
class _Dot(_Node):
    pass


@dataclass
class _Nil(_Node):
    pass


@dataclass
class _Ident(_Node):
    name: str = ""


@dataclass
class _Literal(_Node):
    value: Any = None
    is_number: bool = False


@dataclass
class _Chain(_Node):
    node: _Node | None = None
    fields: list[str] = field(default_factory=list)


@dataclass
class _Command(_Node):
    args: list[_Node] = field(default_factory=list)


@dataclass
class _Pipe(_Node):
    decl: list[str] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[_Command] = field(default_factory=list)


@dataclass
class _Action(_Node):
    pipe: _Pipe | None = None


@dataclass
class _Control(_Node):
    kind: str = ""  # if range with
    pipe: _Pipe | None = None
    body: list[_Node] = field(default_factory=list)
    else_body: list[_Node] | None = None


@dataclass
class _End(_Node):
    pass


@dataclass
class _Else(_Node):
    chain_kind: str = ""  # "if" for {{else if ...}}, "with" for {{else with ...}}


@dataclass
class _Break(_Node):
    pass


@dataclass
class _Continue(_Node):
    pass


@dataclass
class _TemplateCall(_Node):
    name: str = ""
    pipe: _Pipe | None = None


class _BreakSignal(Exception):
    pass


class _ContinueSignal(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Parser (text/template/parse/parse.go)


class _Parser:
    def __init__(self, text: str, name: str, funcs: Mapping[str, Any]) -> None:
        self.text, self.name, self.funcs = text, name, funcs
        self.lexer = _Lexer(text, name)
        self.items = self.lexer.run()
        self.i = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.defs: dict[str, list[_Node]] = {}

    # item access
    def next(self) -> _Item:
        item = self.items[self.i]
        self.i += 1
        return item

    def peek(self) -> _Item:
        return self.items[self.i]

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def next_non_space(self) -> _Item:
        item = self.next()
        while item.kind == "space":
            item = self.next()
        return item

    def peek_non_space(self) -> _Item:
        j = self.i
        while self.items[j].kind == "space":
            j += 1
        return self.items[j]

    def error(self, pos: int, msg: str) -> ParseError:
        return self.lexer.error(pos, msg)

    def unexpected(self, item: _Item, context: str) -> ParseError:
        shown = "EOF" if item.kind == "eof" else f"<{item.val}>" if item.kind != "right" else '"}}"'
        if item.kind in ("string", "rawstring", "text"):
            shown = repr(item.val)
        return self.error(item.pos, f"unexpected {shown} in {context}")

    # top level
    def parse(self) -> list[_Node]:
        nodes: list[_Node] = []
        while self.peek().kind != "eof":
            if self.peek().kind == "left":
                left = self.next()
                if self.peek_non_space().kind == "keyword" and self.peek_non_space().val == "define":
                    self.next_non_space()
                    self.parse_define(left.pos)
                    continue
                self.backup()
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                raise self.error(node.pos, f"unexpected {{{{{node.src}}}}}")
            nodes.append(node)
        return nodes

    def parse_define(self, pos: int) -> None:
        name_item = self.next_non_space()
        if name_item.kind not in ("string", "rawstring"):
            raise self.unexpected(name_item, "define clause")
        name = _unquote(name_item.val, self, name_item.pos)
        self.expect("right", "define clause")
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, _End):
            raise self.error(end.pos, "unexpected {{else}} in define clause")
        self.add_define(name, body, pos)

    def add_define(self, name: str, body: list[_Node], pos: int) -> None:
        # Go: a redefinition replaces an empty (whitespace-only) template, else it is an error.
        old = self.defs.get(name)
        if old is not None and not _is_empty(old) and not _is_empty(body):
            raise self.error(pos, f"template: multiple definition of template {name!r}")
        if old is None or not _is_empty(body):
            self.defs[name] = body

    def expect(self, kind: str, context: str) -> _Item:
        item = self.next_non_space()
        if item.kind != kind:
            raise self.unexpected(item, context)
        return item

    def item_list(self) -> tuple[list[_Node], _Node]:
        """Nodes up to an {{end}} or {{else}}, which is returned as the second value."""
        nodes: list[_Node] = []
        while True:
            if self.peek_non_space().kind == "eof":
                raise self.error(self.peek().pos, "unexpected EOF")
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                return nodes, node
            nodes.append(node)

    def text_or_action(self) -> _Node:
        item = self.next_non_space()
        if item.kind == "text":
            return _Text(item.pos, item.val, item.val)
        if item.kind == "left":
            return self.action()
        raise self.unexpected(item, "input")

    def action(self) -> _Node:
        item = self.next_non_space()
        if item.kind == "keyword":
            word = item.val
            if word == "end":
                self.expect("right", "end")
                return _End(item.pos, "end")
            if word == "else":
                return self.else_control(item)
            if word in ("if", "range", "with"):
                return self.control(word, item.pos)
            if word == "break" or word == "continue":
                if self.range_depth == 0:
                    raise self.error(item.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
                self.expect("right", word)
                return _Break(item.pos, "break") if word == "break" else _Continue(item.pos, "continue")
            if word == "template":
                return self.template_call(item.pos, "template")
            if word == "block":
                return self.block(item.pos)
            if word == "define":
                raise self.error(item.pos, "unexpected <define> in command")
        self.backup()
        pipe = self.pipeline("command", "right")
        return _Action(item.pos, pipe.src, pipe)

    def else_control(self, item: _Item) -> _Node:
        nxt = self.peek_non_space()
        if nxt.kind == "keyword" and nxt.val in ("if", "with"):
            # {{else if ...}}: the rest is a nested control that shares this chain's {{end}}
            return _Else(item.pos, "else", nxt.val)
        self.expect("right", "else")
        return _Else(item.pos, "else")

    def control(self, kind: str, pos: int) -> _Control:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(kind, "right")
            if kind == "range":
                self.range_depth += 1
            try:
                body, end = self.item_list()
            finally:
                if kind == "range":
                    self.range_depth -= 1
            else_body: list[_Node] | None = None
            if isinstance(end, _Else) and end.chain_kind == kind:
                self.next_non_space()  # the keyword; the nested control consumes the {{end}}
                else_body = [self.control(kind, end.pos)]
            elif isinstance(end, _Else) and end.chain_kind:
                raise self.error(end.pos, f"unexpected <{end.chain_kind}> in input")
            elif isinstance(end, _Else):
                else_body, end2 = self.item_list()
                if not isinstance(end2, _End):
                    raise self.error(end2.pos, "expected end; found {{else}}")
            return _Control(pos, kind, kind, pipe, body, else_body)
        finally:
            del self.vars[mark:]

    def template_call(self, pos: int, context: str) -> _TemplateCall:
        name_item = self.next_non_space()
        if name_item.kind not in ("string", "rawstring"):
            raise self.unexpected(name_item, f"{context} clause")
        name = _unquote(name_item.val, self, name_item.pos)
        pipe = None
        if self.peek_non_space().kind != "right":
            pipe = self.pipeline(context, "right")
        else:
            self.next_non_space()
        shown = f"{{{{template {_go_quote(name)}{' ' + pipe.src if pipe else ''}}}}}"
        return _TemplateCall(pos, shown, name, pipe)

    def block(self, pos: int) -> _TemplateCall:
        call = self.template_call(pos, "block")
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, _End):
            raise self.error(end.pos, "unexpected {{else}} in block clause")
        self.add_define(call.name, body, pos)
        return call

    def pipeline(self, context: str, end: str) -> _Pipe:
        start = self.peek_non_space()
        decl: list[str] = []
        is_assign = False
        # declarations: $x := / $x = / $i, $e := (range only)
        save = self.i
        v = self.next_non_space()
        if v.kind == "var":
            nxt = self.next_non_space()
            if nxt.kind in ("declare", "assign"):
                decl = [v.val]
                is_assign = nxt.kind == "assign"  # an undeclared one fails when it runs, as in Go
            elif nxt.kind == "comma" and context == "range":
                v2 = self.next_non_space()
                op = self.next_non_space()
                if v2.kind != "var" or op.kind not in ("declare", "assign"):
                    raise self.error(v.pos, "range can only initialize variables")
                decl = [v.val, v2.val]
                is_assign = op.kind == "assign"
            elif nxt.kind == "comma":
                raise self.error(nxt.pos, f"too many declarations in {context}")
            else:
                self.i = save
        else:
            self.i = save
        self.vars.extend(decl)
        cmds: list[_Command] = []
        while True:
            item = self.peek_non_space()
            if item.kind == end:
                self.next_non_space()
                if not cmds:
                    raise self.error(item.pos, f"missing value for {context}")
                break
            if item.kind == "eof" or item.kind == "right":
                raise self.unexpected(item, context)
            cmds.append(self.command())
        for i, cmd in enumerate(cmds):
            if i > 0 and isinstance(cmd.args[0], (_Literal, _Nil, _Dot)):
                raise self.error(cmd.pos, f"non executable command in pipeline stage {i + 1}")
        src = self.text[start.pos:self.items[self.i - 1].pos].strip()
        return _Pipe(start.pos, src, decl, is_assign, cmds)

    def command(self) -> _Command:
        args: list[_Node] = []
        start = self.peek_non_space().pos
        while True:
            self.peek_non_space()
            node = self.operand()
            if node is not None:
                args.append(node)
            item = self.next()
            if item.kind == "space":
                continue
            if item.kind in ("right", "rparen"):
                self.backup()
            elif item.kind != "pipe":
                raise self.unexpected(item, "operand")
            end_pos = item.pos
            break
        if not args:
            raise self.error(start, "empty command")
        return _Command(start, self.text[start:end_pos].strip(), args)

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind == "field":
            fields: list[str] = []
            while self.peek().kind == "field":
                fields.append(self.next().val[1:])
            end = self.items[self.i - 1]
            src = self.text[node.pos:end.pos + len(end.val)]
            if isinstance(node, _Field):
                return _Field(node.pos, src, node.idents + fields)
            if isinstance(node, _Variable):
                return _Variable(node.pos, src, node.idents + fields)
            if isinstance(node, (_Literal, _Nil)):
                raise self.error(node.pos, f"unexpected . after term {node.src!r}")
            return _Chain(node.pos, src, node, fields)
        return node

    def term(self) -> _Node | None:
        item = self.next_non_space()
        k = item.kind
        if k == "ident":
            if item.val not in self.funcs:
                raise self.error(item.pos, f'function "{item.val}" not defined')
            return _Ident(item.pos, item.val, item.val)
        if k == "dot":
            return _Dot(item.pos, ".")
        if k == "nil":
            return _Nil(item.pos, "nil")
        if k == "var":
            if item.val not in self.vars:
                raise self.error(item.pos, f"undefined variable {_go_quote(item.val)}")
            return _Variable(item.pos, item.val, [item.val])
        if k == "field":
            return _Field(item.pos, item.val, [item.val[1:]])
        if k == "bool":
            return _Literal(item.pos, item.val, item.val == "true")
        if k in ("char", "number"):
            return _Literal(item.pos, item.val, _number(item, self), True)
        if k in ("string", "rawstring"):
            return _Literal(item.pos, item.val, _unquote(item.val, self, item.pos))
        if k == "lparen":
            pipe = self.pipeline("parenthesized pipeline", "rparen")
            return _Chain(item.pos, f"({pipe.src})", pipe, [])
        self.backup()
        return None


def _is_empty(body: list[_Node]) -> bool:
    return all(isinstance(n, _Text) and not n.text.strip() for n in body)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
            "'": "'", '"': '"'}


def _unquote(s: str, parser: _Parser, pos: int) -> str:
    """Go's strconv.Unquote for "..." and `...` literals."""
    if s.startswith("`"):
        return s[1:-1].replace("\r", "")
    body, out, i = s[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise parser.error(pos, f"invalid syntax: {s}")
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + n]
            if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise parser.error(pos, f"invalid syntax: {s}")
            code = int(digits, 16)
            if e != "x" and (code > 0x10FFFF or 0xD800 <= code < 0xE000):
                raise parser.error(pos, f"invalid syntax: {s}")
            out.append(chr(code))
            i += 2 + n
        elif e in "01234567":
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise parser.error(pos, f"invalid syntax: {s}")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise parser.error(pos, f"invalid syntax: {s}")
    return "".join(out)


def _number(item: _Item, parser: _Parser) -> int | float:
    text = item.val
    if item.kind == "char":
        value = _unquote('"' + text[1:-1].replace('"', '\\"') + '"', parser, item.pos)
        if len(value) != 1:
            raise parser.error(item.pos, f"malformed character constant: {text}")
        return ord(value)
    clean = text.replace("_", "")
    try:
        low = clean.lower().lstrip("+-")
        if low.startswith(("0x", "0b", "0o")) and "p" not in low:
            return int(clean, 0)
        if low.isdigit():
            if len(low) > 1 and low.startswith("0"):
                return int(("-" if clean.startswith("-") else "") + low, 8)
            return int(clean)
        number = float.fromhex(clean) if low.startswith("0x") else float(clean)
        if math.isinf(number):
            raise ValueError
        return number
    except ValueError:
        raise parser.error(item.pos, f"bad number syntax: {text!r}") from None


# ---------------------------------------------------------------------------------------------
# Values as Go sees them


def _type_name(v: Any) -> str:
    if isinstance(v, Struct):
        return v.go_type
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, str) for x in v):
            return "[]string"
        return "[]interface {}"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if v is None:
        return "interface {}"
    return type(v).__name__


def _truth(v: Any) -> bool:
    if v is NO_VALUE or v is None:
        return False
    if isinstance(v, Struct):
        return True
    if isinstance(v, (str, list, tuple, Mapping)):
        return len(v) > 0
    if isinstance(v, (bool, int, float)):
        return bool(v)
    return True


def _go_float(f: float, json_style: bool = False) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64) as fmt's %v uses it, or encoding/json's rule."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 and not json_style else "0"
    sign, digits_t, exp = Decimal(repr(f)).as_tuple()
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    assert isinstance(exp, int)
    dp = len("".join(map(str, digits_t))) + exp  # position of the decimal point in digits
    e = dp - 1
    neg = "-" if sign else ""
    # %v is strconv's %g at the shortest precision, which decides with precision 6 (1e+06);
    # encoding/json switches below 1e-6 and at 1e21 and writes e-07 as e-7
    use_exp = (abs(f) < 1e-6 or abs(f) >= 1e21) if json_style else (e < -4 or e >= 6)
    if use_exp:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        es = f"{abs(e)}" if json_style and e < 0 else f"{abs(e):02d}"
        return f"{neg}{mant}e{'-' if e < 0 else '+'}{es}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{neg}{digits}{'0' * (dp - len(digits))}"
    return f"{neg}{digits[:dp]}.{digits[dp:]}"


def go_sprint(v: Any, top: bool = True) -> str:
    """fmt.Sprint of one value (%v)."""
    if v is NO_VALUE:
        return "<no value>" if top else "<invalid reflect.Value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, Struct):
        return "{" + " ".join(go_sprint(x, False) for x in v.values()) + "}"
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{go_sprint(k, False)}:{go_sprint(v[k], False)}"
                                 for k in _sorted_keys(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_sprint(x, False) for x in v) + "]"
    return str(v)


def _sorted_keys(m: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(m)
    except TypeError:
        return sorted(m, key=str)


def go_json(v: Any) -> str:
    """encoding/json's Marshal with HTML escaping off (docker's ``json`` function)."""
    if v is None or v is NO_VALUE:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ExecError(f"json: unsupported value: {_go_float(v)}")
        return _go_float(v, json_style=True)
    if isinstance(v, str):
        return _json_string(v)
    if isinstance(v, Struct):
        return "{" + ",".join(f"{_json_string(str(k))}:{go_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, Mapping):
        # Go sorts map keys; a dict built to mirror a struct keeps its order (insertion order)
        return "{" + ",".join(f"{_json_string(str(k))}:{go_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    raise ExecError(f"json: unsupported type: {type(v).__name__}")


_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _json_string(s: str) -> str:
    out = ['"']
    for c in s:
        if c in _JSON_SHORT:
            out.append(_JSON_SHORT[c])
        elif ord(c) < 0x20 or c in "\u2028\u2029":
            out.append(f"\\u{ord(c):04x}")
        elif 0xD800 <= ord(c) < 0xE000:  # a lone surrogate is invalid UTF-8 to Go
            out.append("\\ufffd")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Functions


class _Fn:
    """A template function: ``params`` are Go kinds ("any", "string", "int", "[]string", "value"),
    ``variadic`` the kind of a trailing ... parameter. ``lazy`` functions get unevaluated args."""

    def __init__(self, fn: Callable[..., Any], params: tuple[str, ...], variadic: str | None = None,
                 lazy: bool = False) -> None:
        self.fn, self.params, self.variadic, self.lazy = fn, params, variadic, lazy


def _convert(v: Any, kind: str) -> Any:
    if kind in ("any", "value"):
        return None if v is NO_VALUE and kind == "any" else v
    if v is NO_VALUE:
        raise _TypeMismatch(f"invalid value; expected {kind}")
    if kind == "string":
        if isinstance(v, str):
            return v
    elif kind == "int":
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    elif kind == "[]string":
        if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            return list(v)
        if v is None:
            return []
    raise _TypeMismatch(f"wrong type for value; expected {kind}; got {_type_name(v)}")


class _ArgError(Exception):
    """An error a function returns (Go: "error calling NAME: ...")."""


class _TypeMismatch(Exception):
    """An argument of the wrong type (Go's validateType, reported at the argument)."""


def _index(item: Any, *indexes: Any) -> Any:
    if item is NO_VALUE or item is None:
        raise _ArgError("index of untyped nil")
    for ix in indexes:
        if item is None:
            raise _ArgError("index of nil pointer")
        if isinstance(item, Struct):
            raise _ArgError(f"can't index item of type {item.go_type}")
        if isinstance(item, Mapping):
            if ix is NO_VALUE or ix is None:
                raise _ArgError("value is nil; should be of type string")
            if not isinstance(ix, str):
                raise _ArgError(f"value has type {_type_name(ix)}; should be string")
            item = item.get(ix)  # Go: the element type's zero value (nil for interface{})
            continue
        if isinstance(item, (list, tuple, str)):
            if not isinstance(ix, int) or isinstance(ix, bool):
                raise _ArgError(f"cannot index slice/array with type {_type_name(ix)}")
            seq = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
            if ix < 0 or ix >= len(seq):
                raise _ArgError(f"index out of range: {ix}")
            item = seq[ix]
            continue
        raise _ArgError(f"can't index item of type {_type_name(item)}")
    return item


def _slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise _ArgError(f"can't slice item of type {_type_name(item)}")
    if len(idx) > 3 or (len(idx) == 3 and isinstance(item, str)):
        raise _ArgError(f"too many slice indexes: {len(idx)}")
    seq = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
    bounds = [0, len(seq)]
    for i, x in enumerate(idx[:2]):
        if not isinstance(x, int) or isinstance(x, bool):
            raise _ArgError(f"cannot index slice/array with type {_type_name(x)}")
        bounds[i] = x
    if len(idx) == 3 and not (bounds[0] <= bounds[1] <= idx[2] <= len(seq)):
        raise _ArgError(f"invalid slice index: {idx[1]} > {idx[2]}")
    lo, hi = bounds
    if lo < 0 or hi > len(seq) or lo > hi:
        raise _ArgError(f"invalid slice index: {lo} > {hi}" if lo > hi else f"index out of range: {max(lo, hi)}")
    out = seq[lo:hi]
    return out.decode("utf-8", "replace") if isinstance(out, bytes) else list(out)


def _len(item: Any) -> int:
    if isinstance(item, (str,)):
        return len(item.encode("utf-8", "surrogatepass"))
    if isinstance(item, (list, tuple)) or (isinstance(item, Mapping) and not isinstance(item, Struct)):
        return len(item)
    if item is None or item is NO_VALUE:
        raise _ArgError("len of nil pointer")
    raise _ArgError(f"len of type {_type_name(item)}")


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise _ArgError("missing argument for comparison")
    for b in bs:
        ka, kb = _kind(a), _kind(b)
        if a is None or b is None or a is NO_VALUE or b is NO_VALUE:
            # Go: nil against nil is equal, nil against a value is not (and no error)
            if (a is None or a is NO_VALUE) and (b is None or b is NO_VALUE):
                return True
            continue
        if ka == "other" or kb == "other":
            raise _ArgError(f"non-comparable type {go_sprint(a if ka == 'other' else b)}: "
                            f"{_type_name(a if ka == 'other' else b)}")
        if ka != kb:
            raise _ArgError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka in ("other", "bool") or kb in ("other", "bool"):
        raise _ArgError("invalid type for comparison")
    if ka != kb:
        raise _ArgError("incompatible types for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _gt(a: Any, b: Any) -> bool:
    return not _le(a, b)


def _ge(a: Any, b: Any) -> bool:
    return not _lt(a, b)


def _sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_sprint(a))
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(go_sprint(a) for a in args) + "\n"


def _sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs people use: v s q d x X o b c t f F e E g G %, flags, width, precision."""
    out: list[str] = []
    i, argi = 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        i += 1
        flags = ""
        while i < len(fmt) and fmt[i] in "-+# 0":
            flags += fmt[i]
            i += 1
        width = ""
        while i < len(fmt) and fmt[i].isdigit():
            width += fmt[i]
            i += 1
        prec: str | None = None
        if i < len(fmt) and fmt[i] == ".":
            i += 1
            prec = ""
            while i < len(fmt) and fmt[i].isdigit():
                prec += fmt[i]
                i += 1
        if i >= len(fmt):
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_pad(_format_one(verb, arg, flags, prec), width, flags, verb))
    if argi < len(args):
        extra = ", ".join(f"{_type_name(a)}={go_sprint(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(s: str, width: str, flags: str, verb: str) -> str:
    if not width:
        return s
    w = int(width)
    if len(s) >= w:
        return s
    if "-" in flags:
        return s + " " * (w - len(s))
    if "0" in flags and verb in "dxXobfFeEgG":
        sign = s[0] if s[:1] in "+-" else ""
        return sign + "0" * (w - len(s)) + s[len(sign):]
    return " " * (w - len(s)) + s


def _format_one(verb: str, arg: Any, flags: str, prec: str | None) -> str:
    bad = f"%!{verb}(<nil>)" if arg is None else f"%!{verb}({_type_name(arg)}={go_sprint(arg)})"
    if verb == "v":
        return go_sprint(arg)
    if verb == "s":
        s = go_sprint(arg)
        if not isinstance(arg, (str, list, tuple, Mapping)):
            return bad
        return s[:int(prec)] if prec else s
    if verb == "q":
        if isinstance(arg, str):
            return _json_string(arg) if "#" not in flags or "`" in arg else f"`{arg}`"
        if isinstance(arg, int) and not isinstance(arg, bool):
            return "'" + chr(arg) + "'"
        return bad
    if verb == "t":
        return ("true" if arg else "false") if isinstance(arg, bool) else bad
    if verb in "dxXobc":
        if isinstance(arg, str) and verb in "xX":
            h = arg.encode("utf-8", "surrogatepass").hex()
            return h.upper() if verb == "X" else h
        if not isinstance(arg, int) or isinstance(arg, bool):
            return bad
        if verb == "c":
            return chr(arg)
        body = format(abs(arg), {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb])
        if "#" in flags and verb in "xXo":
            body = {"x": "0x", "X": "0X", "o": "0"}[verb] + body
        sign = "-" if arg < 0 else "+" if "+" in flags else " " if " " in flags else ""
        return sign + body
    if verb in "fFeEgG":
        if isinstance(arg, bool) or not isinstance(arg, (int, float)):
            return bad
        if isinstance(arg, int):
            return f"%!{verb}(int={arg})"
        p = int(prec) if prec else (6 if verb in "fFeE" else None)
        if verb in "gG" and p is None:
            s = _go_float(arg)
            return s.upper() if verb == "G" else s
        s = format(arg, f".{p}{verb}")
        sign = "+" if "+" in flags and arg >= 0 else ""
        return sign + s
    return bad


def _html(*args: Any) -> str:
    s = _eval_args_string(args)
    out = []
    for c in s:
        out.append({"<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&#39;", '"': "&#34;", "\0": "\ufffd"}.get(c, c))
    return "".join(out)


def _js(*args: Any) -> str:
    s = _eval_args_string(args)
    out = []
    for c in s:
        if c in ("\\", "'", '"'):
            out.append("\\" + c)
        elif c in "<>&=":
            out.append(f"\\u{ord(c):04X}")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(_eval_args_string(args), safe="-_.~")


def _eval_args_string(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(*args)


def _call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise _ArgError(f"non-function of type {_type_name(fn)}")
    return fn(*args)


def _is_separator(c: str) -> bool:
    """strings.Title's word boundary: ASCII other than letters, digits and _; Unicode spaces."""
    if ord(c) < 0x80:
        return not (c.isalnum() or c == "_")
    if c.isalpha() or c.isdigit():
        return False
    return c.isspace()


def _title(s: str) -> str:
    """strings.Title: each letter after a separator mapped to title case (one rune for one)."""
    out, prev = [], " "
    for c in s:
        if _is_separator(prev):
            t = c.title()
            out.append(t if len(t) == 1 else c)
        else:
            out.append(c)
        prev = c
    return "".join(out)


def _truncate(s: str, n: int) -> str:
    b = s.encode("utf-8", "surrogatepass")
    return s if len(b) < n else b[:max(n, 0)].decode("utf-8", "ignore")


BUILTINS: dict[str, _Fn] = {
    "and": _Fn(lambda *a: a, ("value",), "value", lazy=True),
    "or": _Fn(lambda *a: a, ("value",), "value", lazy=True),
    "not": _Fn(lambda v: not _truth(v), ("value",)),
    "len": _Fn(_len, ("value",)),
    "index": _Fn(_index, ("value",), "value"),
    "slice": _Fn(_slice, ("value",), "value"),
    "print": _Fn(_sprint, (), "any"),
    "printf": _Fn(_sprintf, ("string",), "any"),
    "println": _Fn(_sprintln, (), "any"),
    "eq": _Fn(_eq, ("value",), "value"),
    "ne": _Fn(_ne, ("value", "value")),
    "lt": _Fn(_lt, ("value", "value")),
    "le": _Fn(_le, ("value", "value")),
    "gt": _Fn(_gt, ("value", "value")),
    "ge": _Fn(_ge, ("value", "value")),
    "html": _Fn(_html, (), "any"),
    "js": _Fn(_js, (), "any"),
    "urlquery": _Fn(_urlquery, (), "any"),
    "call": _Fn(_call, ("value",), "value"),
    # docker/cli templates.basicFunctions
    "json": _Fn(go_json, ("any",)),
    "split": _Fn(lambda s, sep: s.split(sep) if sep else list(s), ("string", "string")),
    "join": _Fn(lambda a, sep: sep.join(a), ("[]string", "string")),
    "title": _Fn(_title, ("string",)),
    "lower": _Fn(lambda s: s.lower(), ("string",)),
    "upper": _Fn(lambda s: s.upper(), ("string",)),
    "pad": _Fn(lambda s, before, after: " " * before + s + " " * after, ("string", "int", "int")),
    "truncate": _Fn(_truncate, ("string", "int")),
}

# docker/cli templates.HeaderFunctions: a table's header row keeps its text intact
HEADER_FUNCTIONS: dict[str, _Fn] = {
    **BUILTINS,
    "json": _Fn(lambda v: v, ("string",)),
    "split": _Fn(lambda v, _s: v, ("string", "string")),
    "join": _Fn(lambda v, _s: v, ("string", "string")),
    "title": _Fn(lambda v: v, ("string",)),
    "lower": _Fn(lambda v: v, ("string",)),
    "upper": _Fn(lambda v: v, ("string",)),
    "truncate": _Fn(lambda v, _n: v, ("string", "int")),
}


# ---------------------------------------------------------------------------------------------
# Execution (text/template/exec.go)


class Template:
    """A parsed template; :meth:`execute` renders it against data."""

    def __init__(self, text: str, name: str = "", funcs: Mapping[str, _Fn] | None = None) -> None:
        self.text, self.name = text, name
        self.funcs = dict(funcs if funcs is not None else BUILTINS)
        parser = _Parser(text, name, self.funcs)
        self.root = parser.parse()
        self.defs = parser.defs

    def execute(self, data: Any, funcs: Mapping[str, _Fn] | None = None) -> str:
        state = _State(self, dict(funcs) if funcs is not None else self.funcs)
        dot = NO_VALUE if data is None else data
        state.vars = [("$", dot)]
        state.walk_list(dot, self.root)
        return "".join(state.out)


class _State:
    def __init__(self, tmpl: Template, funcs: dict[str, _Fn]) -> None:
        self.tmpl, self.funcs = tmpl, funcs
        self.out: list[str] = []
        self.vars: list[tuple[str, Any]] = []
        self.depth = 0
        self.exec_name = tmpl.name

    def error(self, node: _Node, msg: str) -> ExecError:
        text = self.tmpl.text
        line = text.count("\n", 0, node.pos) + 1
        col = node.pos - (text.rfind("\n", 0, node.pos) + 1)
        return ExecError(f'template: {self.tmpl.name}:{line}:{col}: executing "{self.exec_name}" '
                         f"at <{node.src}>: {msg}")

    def var(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise ExecError(f"undefined variable: {name}")

    def set_var(self, node: _Node, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.error(node, f"undefined variable: {name}")

    def walk_list(self, dot: Any, nodes: list[_Node]) -> None:
        for node in nodes:
            self.walk(dot, node)

    def walk(self, dot: Any, node: _Node) -> None:
        if isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _Action):
            assert node.pipe is not None
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.out.append(self.printable(node, value))
        elif isinstance(node, _Control):
            mark = len(self.vars)
            try:
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    assert node.pipe is not None
                    value = self.eval_pipeline(dot, node.pipe)
                    if _truth(value):
                        self.walk_list(value if node.kind == "with" else dot, node.body)
                    elif node.else_body is not None:
                        self.walk_list(dot, node.else_body)
            finally:
                del self.vars[mark:]
        elif isinstance(node, _Break):
            raise _BreakSignal
        elif isinstance(node, _Continue):
            raise _ContinueSignal
        elif isinstance(node, _TemplateCall):
            self.walk_template(dot, node)
        else:
            raise self.error(node, f"unknown node {type(node).__name__}")

    def printable(self, node: _Node, value: Any) -> str:
        if callable(value) and not isinstance(value, (Mapping, list)):
            raise self.error(node, f"can't print {node.src} of type func")
        return go_sprint(value)

    def walk_range(self, dot: Any, node: _Control) -> None:
        assert node.pipe is not None
        pipe = node.pipe
        value = self.eval_pipeline(dot, _Pipe(pipe.pos, pipe.src, [], False, pipe.cmds))
        items: list[tuple[Any, Any]]
        last = pipe.cmds[-1].args[-1]  # Go reports at the node it evaluated last
        if isinstance(value, Struct):
            raise self.error(last, f"range can't iterate over {go_sprint(value)}")
        if isinstance(value, Mapping):
            items = [(k, value[k]) for k in _sorted_keys(value)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(pipe.decl) > 1:
                raise self.error(last, "can't use ranging over int with two variables")
            items = [(i, i) for i in range(value)]
        elif value is None or value is NO_VALUE:
            items = []
        else:
            raise self.error(last, f"range can't iterate over {go_sprint(value)}")
        if not items:
            if node.else_body is not None:
                self.walk_list(dot, node.else_body)
            return
        mark = len(self.vars)
        for key, elem in items:
            if len(pipe.decl) == 1:
                self.bind(pipe, [elem])
            elif len(pipe.decl) == 2:
                self.bind(pipe, [key, elem])
            try:
                self.walk_list(elem, node.body)
            except _ContinueSignal:
                pass
            except _BreakSignal:
                break
            finally:
                del self.vars[mark:]

    def bind(self, pipe: _Pipe, values: list[Any]) -> None:
        for name, v in zip(pipe.decl, values, strict=True):
            if pipe.is_assign:
                self.set_var(pipe, name, v)
            else:
                self.vars.append((name, v))

    def walk_template(self, dot: Any, node: _TemplateCall) -> None:
        body = self.tmpl.defs.get(node.name)
        if body is None:
            raise self.error(node, f"template {_go_quote(node.name)} not defined")
        value = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else NO_VALUE
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(node, f"exceeded maximum template depth ({MAX_DEPTH})")
        saved_vars, saved_name = self.vars, self.exec_name
        self.vars, self.exec_name = [("$", value)], node.name
        try:
            self.walk_list(value, body)
        finally:
            self.vars, self.exec_name = saved_vars, saved_name
            self.depth -= 1

    def eval_pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        value: Any = NO_VALUE
        final_given = False
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value if final_given else None, final_given)
            final_given = True
        if pipe.decl:
            if pipe.is_assign:
                self.set_var(pipe, pipe.decl[0], value)
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def eval_command(self, dot: Any, cmd: _Command, final: Any, has_final: bool) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final, has_final)
        if isinstance(first, _Chain):
            return self.eval_chain(dot, first, cmd.args, final, has_final)
        if isinstance(first, _Ident):
            return self.eval_function(dot, first, cmd, cmd.args, final, has_final)
        if isinstance(first, _Variable):
            return self.eval_variable(dot, first, cmd.args, final, has_final)
        if len(cmd.args) > 1 or has_final:
            raise self.error(first, f"can't give argument to non-function {first.src}")
        if isinstance(first, _Dot):
            return dot
        if isinstance(first, _Nil):
            raise self.error(first, "nil is not a command")
        if isinstance(first, _Literal):
            return first.value
        raise self.error(first, f"can't evaluate command {first.src!r}")

    def eval_chain(self, dot: Any, chain: _Chain, args: list[_Node], final: Any, has_final: bool) -> Any:
        assert chain.node is not None
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(chain, f"exceeded maximum template depth ({MAX_DEPTH})")
        try:
            if isinstance(chain.node, _Pipe):
                receiver = self.eval_pipeline(dot, chain.node)
            else:
                receiver = self.eval_arg(dot, chain.node)
        finally:
            self.depth -= 1
        if not chain.fields:
            if len(args) > 1 or has_final:
                raise self.error(chain, f"can't give argument to non-function {chain.src}")
            return receiver
        return self.eval_field_chain(dot, receiver, chain, chain.fields, args, final, has_final)

    def eval_variable(self, dot: Any, var: _Variable, args: list[_Node], final: Any, has_final: bool) -> Any:
        value = self.var(var.idents[0])
        if len(var.idents) == 1:
            if len(args) > 1 or has_final:
                raise self.error(var, f"can't give argument to non-function {var.src}")
            return value
        return self.eval_field_chain(dot, value, var, var.idents[1:], args, final, has_final)

    def eval_field_chain(self, dot: Any, receiver: Any, node: _Node, idents: list[str], args: list[_Node],
                         final: Any, has_final: bool) -> Any:
        for name in idents[:-1]:
            receiver = self.eval_field(node, name, receiver, False)
        return self.eval_field(node, idents[-1], receiver, len(args) > 1 or has_final)

    def eval_field(self, node: _Node, name: str, receiver: Any, has_args: bool) -> Any:
        if receiver is NO_VALUE:
            return NO_VALUE
        if receiver is None:
            raise self.error(node, f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, Struct):
            if name not in receiver:
                raise self.error(node, f"can't evaluate field {name} in type {receiver.go_type}")
            if has_args:
                raise self.error(node, f"{name} has arguments but cannot be invoked as function")
            return receiver[name]
        if isinstance(receiver, Mapping):
            if has_args:
                raise self.error(node, f"{name} is not a method but has arguments")
            return receiver.get(name, NO_VALUE)
        raise self.error(node, f"can't evaluate field {name} in type {_type_name(receiver)}")

    def eval_arg(self, dot: Any, node: _Node) -> Any:
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Field):
            return self.eval_field_chain(dot, dot, node, node.idents, [node], None, False)
        if isinstance(node, _Variable):
            return self.eval_variable(dot, node, [node], None, False)
        if isinstance(node, _Chain):
            return self.eval_chain(dot, node, [node], None, False)
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Ident):
            return self.eval_function(dot, node, _Command(node.pos, node.src, [node]), [node], None, False)
        if isinstance(node, _Pipe):
            return self.eval_pipeline(dot, node)
        raise self.error(node, f"can't handle {node.src} for arg")

    def eval_function(self, dot: Any, ident: _Ident, cmd: _Command, args: list[_Node], final: Any,
                      has_final: bool) -> Any:
        fn = self.funcs.get(ident.name)
        if fn is None:
            raise self.error(ident, f'"{ident.name}" is not a defined function')
        arg_nodes = args[1:]
        if fn.lazy:  # and / or: evaluate until the answer is known
            operands: list[_Node | None] = [*arg_nodes, *([None] if has_final else [])]  # None: the final
            if not operands:
                raise self.error(ident, f"wrong number of args for {ident.name}: want at least 1 got 0")
            result: Any = NO_VALUE
            for operand in operands:
                result = final if operand is None else self.eval_arg(dot, operand)
                if (ident.name == "and") != _truth(result):
                    return result
            return result
        raw = [self.eval_arg(dot, n) for n in arg_nodes]
        if has_final:
            raw.append(final)
        n_fixed = len(fn.params)
        if (fn.variadic is None and len(raw) != n_fixed) or (fn.variadic is not None and len(raw) < n_fixed):
            want = f"at least {n_fixed}" if fn.variadic is not None else str(n_fixed)
            raise self.error(ident, f"wrong number of args for {ident.name}: want {want} got {len(raw)}")
        conv = []
        for i, v in enumerate(raw):
            kind = fn.params[i] if i < n_fixed else fn.variadic or "any"
            node = arg_nodes[i] if i < len(arg_nodes) else None
            if isinstance(node, _Nil) and kind in ("string", "int", "[]string"):
                raise self.error(node, f"cannot assign nil to {kind}")
            if isinstance(node, _Literal) and kind in ("string", "int"):
                ok = isinstance(node.value, str) if kind == "string" else \
                    isinstance(node.value, int) and not isinstance(node.value, bool)
                if not ok:  # Go's evalString / evalInteger for constants
                    raise self.error(node, f"expected {'string' if kind == 'string' else 'integer'}; "
                                           f"found {node.src}")
            try:
                conv.append(_convert(v, fn.params[i] if i < n_fixed else fn.variadic or "any"))
            except _TypeMismatch as e:
                raise self.error(arg_nodes[i] if i < len(arg_nodes) else cmd, str(e)) from None
        try:
            return fn.fn(*conv)
        except _ArgError as e:
            raise self.error(cmd, f"error calling {ident.name}: {e}") from None
        except ExecError:
            raise
        except (TypeError, ValueError) as e:
            raise self.error(cmd, f"error calling {ident.name}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Entry points


def parse(template: str, name: str = "", funcs: Mapping[str, _Fn] | None = None) -> Template:
    """Parse a template (raises :class:`ParseError` with Go's message)."""
    try:
        return Template(template, name, funcs)
    except RecursionError:
        raise ParseError(f"template: {name}:1: too deeply nested") from None


def render(template: str, data: Any) -> str:
    """Parse and execute ``template`` against ``data``."""
    try:
        return parse(template).execute(data)
    except RecursionError:
        raise ExecError("template: :1: too deeply nested") from None


def render_inspect(template: str, typed: Any, raw: Any) -> str:
    """docker inspect's rule: execute on the typed value; when that fails, on its raw JSON form."""
    tmpl = parse(template)
    try:
        return tmpl.execute(typed)
    except ExecError:
        return tmpl.execute(raw)


def expand_escapes(fmt: str) -> str:
    """docker's formatter expands the two-character sequences ``\\t`` and ``\\n``."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def is_table(fmt: str) -> bool:
    return fmt.startswith("table")


def format_rows(fmt: str, rows: Iterable[Any], headers: Mapping[str, str], default: str = "") -> str:
    """docker's ``--format`` for lists (cli/command/formatter): each row rendered and ended with a
    newline; with a ``table`` prefix a header row (the template against ``headers``, with docker's
    header functions) and the columns aligned by :func:`tabwrite`. A bare ``table`` uses
    ``default`` (the verb's default table format without its ``table`` prefix)."""
    table = is_table(fmt)
    body = fmt[len("table"):] if table else fmt
    body = body.strip(" ")
    if table and not body:
        body = default
    body = expand_escapes(body)
    tmpl = parse(body)
    lines = [tmpl.execute(row) + "\n" for row in rows]
    if not table:
        return "".join(lines)
    header_tmpl = parse(body, funcs=HEADER_FUNCTIONS)
    header = header_tmpl.execute(dict(headers), funcs=HEADER_FUNCTIONS) + "\n"
    return tabwrite(header + "".join(lines))


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter with padchar ' ' and no flags: tab-terminated cells aligned in column
    blocks (consecutive lines that have that column); the last cell of a line is not aligned."""
    trailing_newline = text.endswith("\n")
    lines = [line.split("\t") for line in (text[:-1] if trailing_newline else text).split("\n")]
    out: list[str] = []

    def write_lines(widths: list[int], line0: int, line1: int) -> None:
        for line in lines[line0:line1]:
            parts = []
            for j, cell in enumerate(line):
                parts.append(cell)
                if j < len(widths) and j < len(line) - 1:  # the last cell is never padded
                    parts.append(" " * (widths[j] - len(cell)))
            out.append("".join(parts))

    def fmt(widths: list[int], line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(widths, line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            fmt(widths + [width], line0, this)
            line0 = this
        write_lines(widths, line0, line1)

    fmt([], 0, len(lines))
    return "\n".join(out) + ("\n" if trailing_newline else "")
