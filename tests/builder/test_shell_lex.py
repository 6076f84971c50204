"""The expansion table: word, environment, expected word (or words, or error), as BuildKit lexes it."""

from __future__ import annotations

import pytest

from builder.errors import ExpansionError, UnsetVariableError
from builder.shell_lex import ShellLex

ENV = {
    "a": "hello", "b": "two words", "empty": "", "path": "/usr/local/bin/python3.11",
    "file": "archive.tar.gz", "x": "aXbXc", "star": "*", "spaces": "  padded  ", "dollar": "$a",
    "quote": "it's", "under_score": "u", "A1": "a-one", "éclair": "pastry",
}
ERR = ExpansionError

# (word, expected): expected is a str for process_word, ERR or UnsetVariableError for errors.
WORD_CASES: list[tuple[str, object]] = [
    # plain text and simple references
    ("plain", "plain"),
    ("", ""),
    ("$a", "hello"),
    ("${a}", "hello"),
    ("$a$a", "hellohello"),
    ("${a}world", "helloworld"),
    ("$aworld", ""),
    ("pre-$a-post", "pre-hello-post"),
    ("$under_score", "u"),
    ("$A1", "a-one"),
    ("$éclair", "pastry"),
    ("$unset", ""),
    ("${unset}", ""),
    ("$", "$"),
    ("a$", "a$"),
    ("$-", ""),
    ("$1", ""),
    ("$12abc", "abc"),
    ("$@", ""),
    ("$$", ""),
    ("$ a", "$ a"),
    ("$/x", "$/x"),
    ("$.", "$."),
    ("${a}${b}", "hellotwo words"),
    ("$dollar", "$a"),
    # default values
    ("${unset:-def}", "def"),
    ("${empty:-def}", "def"),
    ("${a:-def}", "hello"),
    ("${unset-def}", "def"),
    ("${empty-def}", ""),
    ("${a-def}", "hello"),
    ("${unset:-}", ""),
    ("${unset:-$a}", "hello"),
    ("${unset:-${a}}", "hello"),
    ("${unset:-${also:-nested}}", "nested"),
    ("${unset:-two words}", "two words"),
    ("${unset:-'quoted }'}", "quoted }"),
    ('${unset:-"dq }"}', "dq }"),
    ("${unset:-a\\}b}", "a}b"),
    # alternative values
    ("${a:+alt}", "alt"),
    ("${empty:+alt}", ""),
    ("${unset:+alt}", ""),
    ("${a+alt}", "alt"),
    ("${empty+alt}", "alt"),
    ("${unset+alt}", ""),
    ("${a:+$b}", "two words"),
    # required values
    ("${a:?must be set}", "hello"),
    ("${a?must be set}", "hello"),
    ("${empty?msg}", ""),
    ("${unset:?msg}", UnsetVariableError),
    ("${unset?msg}", UnsetVariableError),
    ("${empty:?msg}", UnsetVariableError),
    ("${unset:?}", UnsetVariableError),
    # prefix removal
    ("${path#*/}", "usr/local/bin/python3.11"),
    ("${path##*/}", "python3.11"),
    ("${path#/usr}", "/local/bin/python3.11"),
    ("${path#nomatch}", "/usr/local/bin/python3.11"),
    ("${file#*.}", "tar.gz"),
    ("${file##*.}", "gz"),
    ("${file#?}", "rchive.tar.gz"),
    ("${file#??????}", "e.tar.gz"),
    ("${unset#*}", ""),
    ("${star#\\*}", ""),
    ("${x#a?b}", "Xc"),
    # suffix removal
    ("${path%/*}", "/usr/local/bin"),
    ("${path%%/*}", ""),
    ("${file%.*}", "archive.tar"),
    ("${file%%.*}", "archive"),
    ("${file%.gz}", "archive.tar"),
    ("${file%nomatch}", "archive.tar.gz"),
    ("${file%?}", "archive.tar.g"),
    ("${x%X*}", "aXb"),
    ("${x%%X*}", "a"),
    ("${star%\\*}", ""),
    # substitution
    ("${x/X/-}", "a-bXc"),
    ("${x//X/-}", "a-b-c"),
    ("${x/nomatch/-}", "aXbXc"),
    ("${x//X/}", "abc"),
    ("${x/X}", ERR),
    ("${path//\\//:}", ":usr:local:bin:python3.11"),
    ("${x//?/.}", "....."),
    ("${x/X*/-}", "a-"),
    ("${x//*/y}", "y"),
    ("${unset//a/b}", ""),
    ("${file/.tar/}", "archive.gz"),
    ("${x/a/$a}", "helloXbXc"),
    ("${x//[/x}", "aXbXc"),
    # quotes
    ("'$a'", "$a"),
    ('"$a"', "hello"),
    ("'single'\"double\"", "singledouble"),
    ('"a \'b\' c"', "a 'b' c"),
    ("'a \"b\" c'", 'a "b" c'),
    ('"\\"escaped\\""', '"escaped"'),
    ('"\\$a"', "$a"),
    ('"\\\\"', "\\"),
    ('"\\n stays"', "\\n stays"),
    ("''", ""),
    ('""', ""),
    ('"${unset:-a b}"', "a b"),
    ("'unterminated", ERR),
    ('"unterminated', ERR),
    ('"$quote"', "it's"),
    # escapes outside quotes
    ("\\$a", "$a"),
    ("\\${a}", "${a}"),
    ("a\\ b", "a b"),
    ("\\'x\\'", "'x'"),
    ("trailing\\", "trailing"),
    ("\\\\", "\\"),
    ("\\n", "n"),
    # errors
    ("${", ERR),
    ("${a", ERR),
    ("${}", ERR),
    ("${:}", ERR),
    ("${{a}}", ERR),
    ("${a:x}", ERR),
    ("${a:#x}", ERR),
    ("${a:%x}", ERR),
    ("${a b}", ERR),
    ("${a:-unclosed", ERR),
    ("${a/x", ERR),
    ("${x#\\q}", ERR),
]


@pytest.mark.parametrize(("word", "expected"), WORD_CASES, ids=[repr(w) for w, _ in WORD_CASES])
def test_process_word(word: str, expected: object) -> None:
    lex = ShellLex("\\")
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):
            lex.process_word(word, ENV)
    else:
        assert lex.process_word(word, ENV) == expected


WORDS_CASES: list[tuple[str, list[str]]] = [
    ("a b  c", ["a", "b", "c"]),
    ("$b", ["two", "words"]),
    ('"$b"', ["two words"]),
    ("'$b'", ["$b"]),
    ("x$b", ["xtwo", "words"]),
    ("$spaces", ["padded"]),
    ('"$spaces"', ["  padded  "]),
    ("a\\ b c", ["a b", "c"]),
    ('""', []),
    ('x "" y', ["x", "y"]),
    ("$empty", []),
    ("80/tcp ${ports:-443 8443}", ["80/tcp", "443", "8443"]),
    ("\ta\n", ["a"]),
]


@pytest.mark.parametrize(("word", "expected"), WORDS_CASES, ids=[repr(w) for w, _ in WORDS_CASES])
def test_process_words(word: str, expected: list[str]) -> None:
    assert ShellLex("\\").process_words(word, ENV) == expected


BACKTICK_CASES: list[tuple[str, str]] = [
    ("a`$b", "a$b"),
    ("C:\\path", "C:\\path"),
    ('"`"q`""', '"q"'),
    ("a` b", "a b"),
    ("${unset:-C:\\Program Files}", "C:\\Program Files"),
    ("`", ""),
]


@pytest.mark.parametrize(("word", "expected"), BACKTICK_CASES, ids=[repr(w) for w, _ in BACKTICK_CASES])
def test_backtick_escape(word: str, expected: str) -> None:
    assert ShellLex("`").process_word(word, ENV) == expected


RAW_CASES: list[tuple[str, list[str]]] = [
    ("cat <<'EOF' > f", ["cat", "<<'EOF'", ">", "f"]),
    ('RUN <<"EOF"', ["RUN", '<<"EOF"']),
    ("a\\ b $HOME ${X:-y}", ["a\\ b", "$HOME", "${X:-y}"]),
]


@pytest.mark.parametrize(("word", "expected"), RAW_CASES, ids=[repr(w) for w, _ in RAW_CASES])
def test_raw_modes_keep_quotes_escapes_and_unset_references(word: str, expected: list[str]) -> None:
    lex = ShellLex("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
    assert lex.process_words(word, {}) == expected


def test_matches_report_found_and_missing_names() -> None:
    result, matched, unmatched = ShellLex().process_word_with_matches("$a ${nope:-x} $b", ENV)
    assert (result, matched, unmatched) == ("hello x two words", {"a", "b"}, {"nope"})


def test_errors_name_the_word() -> None:
    with pytest.raises(ExpansionError) as info:
        ShellLex().process_word("x ${y", {})
    assert "failed to process 'x ${y'" in str(info.value) and "missing '}'" in str(info.value)


def test_table_is_large() -> None:
    assert len(WORD_CASES) + len(WORDS_CASES) + len(BACKTICK_CASES) + len(RAW_CASES) >= 100


def test_bad_escape_character_is_rejected() -> None:
    with pytest.raises(ValueError):
        ShellLex("!")
