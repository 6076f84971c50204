"""Go's notion of whitespace, which BuildKit's splitting rules are written against.

Python's ``str.isspace`` also counts the ASCII file/group/record/unit separators
(0x1c-0x1f); Go's ``unicode.IsSpace`` does not, so the builder never uses ``isspace``.
"""

from __future__ import annotations

import re

# unicode.IsSpace: Latin-1 spaces plus the Unicode White_Space property.
GO_SPACES = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
             "\u2028\u2029\u202f\u205f\u3000")
_GO_SPACE_SET = frozenset(GO_SPACES)

# BuildKit's reWhitespace: the separators of whitespace-delimited argument lists.
WHITESPACE_RUN = re.compile(r"[\t\v\f\r ]+")


def is_go_space(ch: str) -> bool:
    return ch in _GO_SPACE_SET


def go_lstrip(text: str) -> str:
    return text.lstrip(GO_SPACES)


def go_strip(text: str) -> str:
    return text.strip(GO_SPACES)
