"""How each instruction's text after the keyword becomes its argument list.

BuildKit shapes arguments per instruction before any typing happens: RUN/CMD/ENTRYPOINT/SHELL
are a JSON array or the whole rest of the line; COPY/ADD/VOLUME are a JSON array or
whitespace-split words (no quote handling); ENV/LABEL are key/value pairs in either the
legacy ``K V`` or the ``K=V ...`` form; ARG is quote-aware words; FROM/EXPOSE are
whitespace-split; the rest take the line as one string. Nothing is expanded here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from builder import keywords
from builder.errors import DockerfileError
from builder.textutil import WHITESPACE_RUN, go_lstrip, go_strip, is_go_space

NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"


@dataclass(frozen=True, slots=True)
class Shaped:
    """Arguments of one instruction, and whether they came from a JSON array."""

    args: tuple[str, ...]
    json: bool = False


def split_command(line: str) -> tuple[str, tuple[str, ...], str]:
    """``(keyword, flags, rest)`` of an instruction line."""
    parts = WHITESPACE_RUN.split(go_strip(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], (), ""
    rest, flags = extract_flags(parts[1])
    return parts[0], flags, rest


def extract_flags(text: str) -> tuple[str, tuple[str, ...]]:
    """Leading ``--flag[=value]`` words of ``text`` and what follows them.

    Flag words may quote their values; a lone ``--`` ends the flags.
    """
    flags: list[str] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and is_go_space(text[pos]):
            pos += 1
        if pos >= n:
            return "", tuple(flags)
        if not text.startswith("--", pos):
            return text[pos:], tuple(flags)
        word, pos, quoted = _flag_word(text, pos)
        if word == "--":
            return text[pos:], tuple(flags)
        if word or quoted:
            flags.append(word)


def _flag_word(text: str, pos: int) -> tuple[str, int, bool]:
    """One flag word starting at ``pos``: its value, the position after it, whether quoted."""
    out: list[str] = []
    quote = ""
    quoted = False
    n = len(text)
    while pos < n:
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and pos + 1 < n:
                pos += 1
                out.append(text[pos])
            elif ch != "\\":
                out.append(ch)
            pos += 1
            continue
        if is_go_space(ch):
            break
        if ch in ("'", '"'):
            quote, quoted = ch, True
        elif ch == "\\":
            if pos + 1 < n:
                pos += 1
                out.append(text[pos])
        else:
            out.append(ch)
        pos += 1
    return "".join(out), pos, quoted


def parse_words(text: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes in the words."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    blank_ok = False
    in_word = False
    pos, n = 0, len(text)
    while pos < n:
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == n:
                    pos += 1
                    quote = ""
                    continue
                word.append(ch)
                pos += 1
                ch = text[pos]
            word.append(ch)
            pos += 1
            continue
        if is_go_space(ch):
            if in_word and (blank_ok or word):
                words.append("".join(word))
            word, blank_ok, in_word = [], False, False
            pos += 1
            continue
        in_word = True
        if ch in ("'", '"'):
            quote, blank_ok = ch, True
        if ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = text[pos]
        word.append(ch)
        pos += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


_SURROGATE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> None:
    # Go's JSON has no NaN/Infinity: such input is not JSON, so it falls back to shell form.
    raise ValueError(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json_array(text: str) -> tuple[str, ...] | None:
    """The strings of a JSON array at the start of ``text``, or None when it is not one.

    Like Go's json.Decoder, only the first JSON value is read: anything after the closing
    bracket is ignored. An array with a non-string element is an error, not shell form.
    """
    text = go_lstrip(text)
    if not text.startswith("["):
        return None
    try:
        value, _ = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise DockerfileError(NOT_STRING_ARRAY)
    # Go decodes lone surrogate escapes to U+FFFD; Python would keep unencodable surrogates.
    return tuple(_SURROGATE.sub("\ufffd", v) for v in value)


def maybe_json(rest: str, escape: str) -> Shaped:
    if not rest:
        return Shaped(())
    array = parse_json_array(rest)
    return Shaped(array, True) if array is not None else Shaped((rest,))


def maybe_json_to_list(rest: str, escape: str) -> Shaped:
    array = parse_json_array(rest)
    return Shaped(array, True) if array is not None else whitespace_delimited(rest, escape)


def whitespace_delimited(rest: str, escape: str) -> Shaped:
    return Shaped(tuple(WHITESPACE_RUN.split(rest))) if rest else Shaped(())


def single_string(rest: str, escape: str) -> Shaped:
    return Shaped((rest,)) if rest else Shaped(())


def name_or_name_value(rest: str, escape: str) -> Shaped:
    return Shaped(tuple(parse_words(rest, escape)))


def name_value(rest: str, escape: str, keyword: str) -> Shaped:
    """ENV/LABEL: ``K V`` (legacy, value is the rest of the line) or ``K=V K2=V2 ...``.

    The result is flattened pairs: ``(k1, v1, k2, v2, ...)``.
    """
    words = parse_words(rest, escape)
    if not words:
        return Shaped(())
    if "=" not in words[0]:
        parts = WHITESPACE_RUN.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{keyword} must have two arguments")
        return Shaped((parts[0], parts[1]))
    pairs: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        key, _, value = word.partition("=")
        pairs += [key, value]
    return Shaped(tuple(pairs))


def health_config(rest: str, escape: str) -> Shaped:
    """HEALTHCHECK: a type word (``CMD``/``NONE``) then, for CMD, JSON or shell form."""
    sep = 0
    while sep < len(rest) and not is_go_space(rest[sep]):
        sep += 1
    if sep == 0:
        return Shaped(())
    command = maybe_json(go_lstrip(rest[sep:]), escape)
    return Shaped((rest[:sep],) + command.args, command.json)


Shaper = Callable[[str, str], Shaped]

SHAPERS: dict[str, Shaper] = {
    keywords.ADD.lower(): maybe_json_to_list,
    keywords.ARG.lower(): name_or_name_value,
    keywords.CMD.lower(): maybe_json,
    keywords.COPY.lower(): maybe_json_to_list,
    keywords.ENTRYPOINT.lower(): maybe_json,
    keywords.ENV.lower(): lambda rest, esc: name_value(rest, esc, keywords.ENV),
    keywords.EXPOSE.lower(): whitespace_delimited,
    keywords.FROM.lower(): whitespace_delimited,
    keywords.HEALTHCHECK.lower(): health_config,
    keywords.LABEL.lower(): lambda rest, esc: name_value(rest, esc, keywords.LABEL),
    keywords.MAINTAINER.lower(): single_string,
    keywords.RUN.lower(): maybe_json,
    keywords.SHELL.lower(): maybe_json,
    keywords.STOPSIGNAL.lower(): single_string,
    keywords.USER.lower(): single_string,
    keywords.VOLUME.lower(): maybe_json_to_list,
    keywords.WORKDIR.lower(): single_string,
}


def ignore(rest: str, escape: str) -> Shaped:
    """Unknown instructions keep no arguments; typing reports them."""
    return Shaped(())
