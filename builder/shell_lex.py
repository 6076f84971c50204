"""Shell-word lexing and variable expansion, as BuildKit's frontend applies it at dispatch.

``ShellLex.process_word`` expands ``$a``, ``${a}`` and the modifiers ``:-  -  :+  +  :?  ?  #  ##
%  %%  /  //`` and removes quotes and escapes; ``process_words`` also splits the result into
words (whitespace from an expanded variable splits, quoted whitespace does not). Which words
of which instruction are expanded is decided in ``builder.expansion``, not here.

The raw modes (``raw_quotes``, ``raw_escapes``) keep quotes and escape characters in the
output; the parser uses them to find heredoc markers without disturbing the line, and
``skip_unset`` leaves references to unknown variables as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from builder.errors import ExpansionError, UnsetVariableError
from builder.textutil import GO_SPACES, is_go_space

_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_EOF = ""
_SPACE_SPLIT = re.compile(f"[{re.escape(GO_SPACES)}]+")


class _Words:
    """Accumulates the word split of a lexed string, the way BuildKit's wordsStruct does."""

    __slots__ = ("buf", "in_word", "words")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def _flush(self) -> None:
        # An empty quoted string ("") marks a word as started but never produces one.
        word = "".join(self.buf)
        if word:
            self.words.append(word)
            self.buf = []
            self.in_word = False

    def add_text(self, text: str) -> None:
        """Unquoted text: whitespace separates words."""
        pieces = _SPACE_SPLIT.split(text)
        for i, piece in enumerate(pieces):
            if i and self.in_word:
                self._flush()
            if piece:
                self.buf.append(piece)
                self.in_word = True

    def add_raw(self, text: str) -> None:
        """Quoted or escaped text: kept whole, even whitespace."""
        self.buf.append(text)
        self.in_word = True

    def result(self) -> list[str]:
        self._flush()
        return self.words


class ShellLex:
    """A BuildKit-compatible lexer for one escape character (backslash or backtick)."""

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset: bool = False) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"escape must be a backslash or a backtick, not {escape!r}")
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """``word`` with variables expanded and quotes removed (no splitting)."""
        return _Scan(self, word, env).run()[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """``word`` expanded, then split on unquoted whitespace."""
        return _Scan(self, word, env).run()[1]

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> tuple[str, set[str], set[str]]:
        """The expansion plus the variable names found in ``env`` and those that were not."""
        scan = _Scan(self, word, env)
        result = scan.run()[0]
        return result, scan.matched, scan.unmatched


class _Scan:
    """One pass over one word (BuildKit's shellWord)."""

    def __init__(self, lex: ShellLex, word: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.src = word
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()
        esc = re.escape(lex.escape)
        # Runs of characters with no special meaning, copied in one step; "}" and "/"
        # matter only as stop characters, so they are handled character by character.
        self._plain = re.compile(f"[^'\"${esc}}}/]+")

    def run(self) -> tuple[str, list[str]]:
        try:
            return self._until(_EOF, self.raw_escapes)
        except RecursionError:
            raise ExpansionError("variable references are nested too deeply", self.src[:80]) from None
        except ExpansionError as e:
            raise (ExpansionError(e.reason, self.src) if type(e) is ExpansionError else
                   UnsetVariableError(e.reason, self.src)) from None

    def _peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else _EOF

    def _next(self) -> str:
        ch = self._peek()
        if ch:
            self.pos += 1
        return ch

    def _until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Lex up to (and consuming) ``stop``; ``_EOF`` means the end of the word."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._until_inner(stop)
        finally:
            self.raw_escapes = saved

    def _until_inner(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        esc = self.lex.escape
        while self.pos < len(self.src):
            ch = self.src[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(out), words.result()
            if ch == "$":
                value = self._dollar()
                out.append(value)
                words.add_text(value)
            elif ch == "'":
                value = self._single_quoted()
                out.append(value)
                words.add_raw(value)
            elif ch == '"':
                value = self._double_quoted()
                out.append(value)
                words.add_raw(value)
            elif ch == esc:
                self.pos += 1
                if self.raw_escapes:
                    out.append(esc)
                    words.add_raw(esc)
                escaped = self._next()
                if not escaped:
                    break
                out.append(escaped)
                words.add_raw(escaped)
            else:
                m = self._plain.match(self.src, self.pos)
                text = m.group() if m else ch
                self.pos += len(text)
                out.append(text)
                words.add_text(text)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def _single_quoted(self) -> str:
        start = self.pos + 1
        end = self.src.find("'", start)
        if end < 0:
            raise ExpansionError("unexpected end of statement while looking for matching single-quote")
        self.pos = end + 1
        body = self.src[start:end]
        return f"'{body}'" if self.lex.raw_quotes else body

    def _double_quoted(self) -> str:
        esc = self.lex.escape
        out: list[str] = ['"'] if self.lex.raw_quotes else []
        self.pos += 1
        while True:
            ch = self._peek()
            if not ch:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.pos += 1
                if self.lex.raw_quotes:
                    out.append('"')
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self.pos += 1
            if ch == esc:
                if self.raw_escapes:
                    out.append(esc)
                following = self._peek()
                if not following:
                    continue
                if following in ('"', "$", esc):
                    ch = self._next()
            out.append(ch)

    def _name(self) -> str:
        """A variable name: digits, one special parameter, or letters/digits/underscores."""
        start = self.pos
        ch = self._peek()
        if ch and ch.isdecimal():
            while self._peek() and self._peek().isdecimal():
                self.pos += 1
            return self.src[start:self.pos]
        if ch in _SPECIAL_PARAMS and ch:
            self.pos += 1
            return ch
        while True:
            ch = self._peek()
            if not ch or not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            self.pos += 1
        return self.src[start:self.pos]

    def _lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    def _dollar(self) -> str:
        self.pos += 1
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value, found = self._lookup(name)
            return "$" + name if not found and self.lex.skip_unset else value
        self.pos += 1
        ch = self._peek()
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        if ch in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self._name()
        op = self._next()
        if op == "}":
            value, found = self._lookup(name)
            return f"${{{name}}}" if not found and self.lex.skip_unset else value
        if op == "/":
            return self._substitute(name)
        if not op:
            raise ExpansionError("syntax error: missing '}'")
        null_is_unset = op == ":"
        if null_is_unset:
            op = self._next()
        return self._modifier(name, op, null_is_unset)

    def _modifier(self, name: str, op: str, null_is_unset: bool) -> str:
        shown = (":" if null_is_unset else "") + op
        if op not in ("+", "-", "?", "#", "%") and not null_is_unset:
            raise ExpansionError(f"unsupported modifier ({shown}) in substitution")
        pattern_op = op in ("#", "%")
        if null_is_unset and pattern_op:
            raise ExpansionError(f"unsupported modifier ({shown}) in substitution")
        word = self._braced_word("}", pattern_op, "syntax error: missing '}'")
        value, is_set = self._lookup(name)
        if self.lex.skip_unset and not is_set:
            return f"${{{name}{shown}{word}}}"
        empty = not is_set or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            if not is_set:
                raise UnsetVariableError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise UnsetVariableError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if op in ("#", "%"):
            greedy = word.startswith(op)
            if greedy:
                word = word[1:]
            return _trim_suffix(word, value, greedy) if op == "%" else _trim_prefix(word, value, greedy)
        raise ExpansionError(f"unsupported modifier ({shown}) in substitution")

    def _braced_word(self, stop: str, raw_escapes: bool, eof_message: str) -> str:
        try:
            return self._until(stop, raw_escapes)[0]
        except ExpansionError as e:
            if type(e) is ExpansionError and not self._peek():
                raise ExpansionError(eof_message) from None
            raise

    def _substitute(self, name: str) -> str:
        replace_all = self._peek() == "/"
        if replace_all:
            self.pos += 1
        pattern = self._braced_word("/", True, "syntax error: missing '/' in ${}")
        replacement = self._braced_word("}", True, "syntax error: missing '}'")
        value, is_set = self._lookup(name)
        if self.lex.skip_unset and not is_set:
            return f"${{{name}/{pattern}/{replacement}}}"
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        return _go_replace(regex, value, _go_template(replacement), replace_all)


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard pattern (``*`` and ``?``, no brackets) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < n else ""
            if following in ("}", "/"):
                continue
            if following not in ("*", "?", "\\"):
                shown = following or "\ufffd"
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'")
            out.append(re.escape(following))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse_pattern(pattern: str) -> str:
    """The pattern reversed, keeping each escape in front of the character it escapes."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex finds the leftmost match, so the shortest/longest suffix is found as a
    # prefix of the reversed value.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


_TEMPLATE_REF = re.compile(r"\$(?:\$|\{[A-Za-z0-9_]+\}|[A-Za-z0-9_]+)")


def _go_template(replacement: str) -> str:
    """Go's Regexp.Expand on a pattern without groups: ``$$`` is ``$``, any ``$name`` is empty."""
    return _TEMPLATE_REF.sub(lambda m: "$" if m.group() == "$$" else "", replacement)


def _go_replace(regex: re.Pattern[str], value: str, replacement: str, replace_all: bool) -> str:
    """Replace like Go's regexp: an empty match right after a match is not replaced."""
    if not replace_all:
        m = regex.search(value)
        return value[:m.start()] + replacement + value[m.end():] if m else value
    out: list[str] = []
    last_end, pos = 0, 0
    while pos <= len(value):
        m = regex.search(value, pos)
        if not m:
            break
        out.append(value[last_end:m.start()])
        if m.end() > last_end or m.start() == 0:
            out.append(replacement)
        last_end = m.end()
        pos = m.end() if m.end() > pos else pos + 1
    out.append(value[last_end:])
    return "".join(out)


def has_variable(word: str) -> bool:
    """Whether expansion could change ``word`` beyond removing quotes and escapes."""
    return "$" in word


__all__ = ["ShellLex", "has_variable", "is_go_space"]
