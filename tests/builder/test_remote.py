"""builder/remote.py: which ADD source is a git ref, a URL or a path (BuildKit's dfgitutil cases),
the name a download gets, HTTP dates, and the checks dispatch makes before anything runs."""

from __future__ import annotations

import pytest

from builder.check import check_dockerfile
from builder.errors import DockerfileError
from builder.remote import UNNAMED, GitRef, classify, git_options, http_time, parse_git_ref, url_file_name

# (source, expected GitRef fields or None when it is not a git ref): dfgitutil's own table,
# plus the query form of Dockerfile 1.18.
GIT_REFS: list[tuple[str, dict | None]] = [
    ("https://example.com/", None),
    ("https://example.com/foo", None),
    ("https://example.com/foo.git", {"remote": "https://example.com/foo.git"}),
    ("https://example.com/foo.git#deadbeef", {"remote": "https://example.com/foo.git", "ref": "deadbeef"}),
    ("https://example.com/foo.git#release/1.2", {"ref": "release/1.2"}),
    ("https://example.com/foo.git/", None),
    ("https://example.com/foo.git.bar", None),
    ("git://example.com/foo", {"remote": "git://example.com/foo", "scheme": "git"}),
    ("github.com/moby/buildkit", None),            # indistinguishable from a path: a path for ADD
    ("custom.xyz/moby/buildkit.git", None),
    ("https://github.com/moby/buildkit", None),
    ("https://foo:bar@github.com/moby/buildkit.git", {"remote": "https://foo:bar@github.com/moby/buildkit.git"}),
    ("git@github.com:moby/buildkit", {"remote": "git@github.com:moby/buildkit", "scheme": "ssh"}),
    ("git@github.com:moby/buildkit.git#v1:sub", {"remote": "git@github.com:moby/buildkit.git", "ref": "v1",
                                                 "subdir": "sub"}),
    ("https://github.com/foo/bar.git#baz/qux:quux/quuz", {"ref": "baz/qux", "subdir": "quux/quuz"}),
    ("http://github.com/docker/docker.git:#branch", None),
    ("https://github.com/docker/docker.git#:myfolder", {"ref": None, "subdir": "myfolder"}),
    ("./.git", None),
    (".git", None),
    ("file:///srv/repo.git", None),                 # not a scheme git sources know: a path
    ("https://github.com/docker/docker.git?ref=v1.0.0&subdir=/subdir",
     {"remote": "https://github.com/docker/docker.git", "ref": "v1.0.0", "subdir": "/subdir"}),
    ("https://h/r.git?tag=v2", {"ref": "refs/tags/v2"}),
    ("https://h/r.git?branch=dev&keep-git-dir", {"ref": "refs/heads/dev", "keep_git_dir": True}),
    ("https://h/r.git?commit=abc123", {"ref": "abc123", "checksum": "abc123"}),
]


@pytest.mark.parametrize(("src", "expected"), GIT_REFS, ids=[s for s, _ in GIT_REFS])
def test_parse_git_ref(src: str, expected: dict | None) -> None:
    got = parse_git_ref(src)
    if expected is None:
        assert got is None
        return
    assert isinstance(got, GitRef)
    for key, value in expected.items():
        assert getattr(got, key) == value, key


@pytest.mark.parametrize("src", ["https://h/r.git?tag=a&branch=b", "https://h/r.git?nope=1",
                                 "https://h/r.git?ref=a&ref=b", "https://h/r.git?subdir=",
                                 "https://h/r.git#x?ref=y", "https://h/r.git##ref=x"])
def test_bad_git_queries_are_errors(src: str) -> None:
    if src == "https://h/r.git#x?ref=y":      # "?ref=y" inside the fragment is part of the ref
        assert parse_git_ref(src) is not None
        return
    with pytest.raises(DockerfileError):
        parse_git_ref(src)


def test_classify() -> None:
    assert classify("https://h/file.tgz") == "url"
    assert classify("http://h/r.git") == "git"
    assert classify("src/app.py") == "local"
    assert classify("ssh://git@h/r") == "git"


@pytest.mark.parametrize(("url", "name"), [
    ("https://h/dir/file.txt", "file.txt"),
    ("https://h/dir/", "dir"),                    # Go's path.Base drops the trailing slash
    ("https://h", UNNAMED), ("https://h/", UNNAMED),
    ("https://h/..%2F..%2Fetc%2Fpasswd", "passwd"),
    ("https://h/%2e%2e", UNNAMED),                # ".." would name the directory above
    ("https://h/a%00b", UNNAMED),
    ("https://h/f.txt?x=1#frag", "f.txt"),
])
def test_url_file_name(url: str, name: str) -> None:
    assert url_file_name(url) == name


def test_http_time() -> None:
    assert http_time("Wed, 21 Oct 2015 07:28:00 GMT") == 1445412480
    assert http_time("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert http_time("Sun Nov  6 08:49:37 1994") == 784111777
    assert http_time("yesterday") is None and http_time(None) is None


def test_git_options_agree_with_the_flags() -> None:
    ref = parse_git_ref("https://h/r.git?checksum=abc&keep-git-dir=false")
    assert ref is not None
    assert git_options(ref, None, False) == ("abc", False)
    with pytest.raises(DockerfileError, match="checksum mismatch"):
        git_options(ref, "def", False)
    with pytest.raises(DockerfileError, match="inconsistent keep-git-dir"):
        git_options(ref, None, True)


@pytest.mark.parametrize(("line", "message"), [
    ("COPY https://h/f /d/", "source can't be a URL for COPY"),
    ("COPY https://h/r.git /d/", "source can't be a git ref for COPY"),
    ("ADD --checksum=sha256:" + "a" * 64 + " f /d/", "checksum requires HTTP(S) or Git sources"),
    ("ADD --checksum=zz https://h/r.git /d/", "expected hex commit hash"),
    ("ADD --checksum=sha256:abc https://h/f /d/", "invalid checksum digest length"),
    ("ADD https://h/r.git?nope=1 /d/", "unexpected query 'nope'"),
])
def test_check_rejects_bad_remote_sources(line: str, message: str) -> None:
    report = check_dockerfile(f"FROM scratch\n{line}\n".encode())
    assert [e.line for e in report.errors] == [2]
    assert message in report.errors[0].message
