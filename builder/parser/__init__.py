"""The Dockerfile parser: bytes to nodes with line ranges, directives and heredocs; no expansion."""

from builder.parser.nodes import Directive, Heredoc, Node, ParseResult
from builder.parser.parser import decode, parse, parse_collecting

__all__ = ["Directive", "Heredoc", "Node", "ParseResult", "decode", "parse", "parse_collecting"]
