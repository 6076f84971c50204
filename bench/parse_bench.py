"""Time parsing a generated 1,000-instruction Dockerfile (median of several runs).

Run: ``.venv/bin/python bench/parse_bench.py``. Prints the median for the parser alone
(``builder.parser.parse``: lines, continuations, heredocs, argument shaping) and for
``parse_dockerfile`` (which also types every instruction and splits stages).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder import parse_dockerfile
from builder.parser import parse

INSTRUCTIONS = 1000
RUNS = 15

_BLOCK = [
    "FROM --platform=$BUILDPLATFORM golang:1.22-alpine AS stage{n}",
    "ARG VERSION=1.{n} TARGETOS TARGETARCH",
    "ENV APP_HOME=/srv/app{n} PATH=/srv/app{n}/bin:$PATH",
    "LABEL org.opencontainers.image.version=\"1.{n}\" maintainer=\"team@example.com\"",
    "WORKDIR /src/{n}",
    "COPY --chown=app:app --chmod=0644 go.mod go.sum ./",
    "RUN --mount=type=cache,target=/go/pkg/mod,sharing=locked \\\n"
    "    --mount=type=bind,source=.,target=/src \\\n"
    "    set -eux; \\\n"
    "    # build the binary\n"
    "    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app{n} ./cmd/app; \\\n"
    "    echo done",
    "COPY <<EOF /etc/app{n}.conf\nlisten = 80{n}\nname = ${{APP_HOME}}\nEOF",
    "EXPOSE 80/tcp 443/tcp",
    "HEALTHCHECK --interval=30s --timeout=3s CMD [\"/out/app{n}\", \"--health\"]",
]


def generate(instructions: int = INSTRUCTIONS) -> str:
    lines = ["# syntax=docker/dockerfile:1"]
    count = 0
    n = 0
    while count < instructions:
        for template in _BLOCK:
            if count == instructions:
                break
            lines.append(template.format(n=n))
            count += 1
        n += 1
    lines.append('ENTRYPOINT ["/out/app0"]')
    return "\n".join(lines) + "\n"


def median_ms(fn: Callable[[], object], runs: int = RUNS) -> float:
    fn()  # warm up imports and regex caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    text = generate()
    data = text.encode()
    nodes = len(parse(data).nodes)
    typed = sum(1 + len(s.instructions) for s in parse_dockerfile(data).stages)
    parse_ms = median_ms(lambda: parse(data))
    full_ms = median_ms(lambda: parse_dockerfile(data))
    print(f"{nodes} instructions ({typed} typed), {len(text.splitlines())} lines, {len(data)} bytes")
    print(f"parse (nodes):               median {parse_ms:.1f} ms over {RUNS} runs")
    print(f"parse_dockerfile (typed):    median {full_ms:.1f} ms over {RUNS} runs")


if __name__ == "__main__":
    main()
