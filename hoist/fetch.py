"""The downloads of ``ADD https://...``: ``builder.source.UrlFetcher`` over aiohttp.

What Go's ``http.Client`` does for BuildKit's HTTP source, with explicit bounds: at most 10
redirects, each to an ``http`` or ``https`` URL (a redirect to ``file://`` or anything else is
refused, as Go refuses an unsupported protocol scheme); a conditional request
(``If-None-Match``) answered 304 writes nothing; any other final status outside 200..399 is an
error (``invalid response status 404``); a ``Content-Encoding`` the server chose is decoded, and
the bytes *written* are what is counted against the limit, so a compressed bomb stops at it
too. The body streams to the file in 64 KiB pieces (memory stays flat, whatever the length);
past ``max_bytes`` the download stops and the partial file is removed. Proxies come from the
usual environment variables; TLS trusts the system CAs plus the host's ``certs.d`` directory
(``registry/client/tls.py``, as for a registry). A connection that goes quiet for
``HOIST_ADD_READ_TIMEOUT`` seconds (default 120) fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from pathlib import Path

from yarl import URL

from builder.source import Download, FetchError
from registry.client.errors import ConfigurationError
from registry.client.lazytls import deferred_default_cas
from registry.client.tls import tls_context

with deferred_default_cas():    # aiohttp's import-time CA loads, deferred to first use
    import aiohttp

MAX_REDIRECTS = 10
CHUNK = 64 << 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _read_timeout() -> float:
    try:
        return float(os.environ.get("HOIST_ADD_READ_TIMEOUT", "120"))
    except ValueError:
        return 120.0


def cli_fetcher() -> HttpFetcher:
    """The fetcher of ``hoist build``: TLS trusts what the registry client trusts (the system CAs
    plus ``certs.d`` under $HOIST_ROOT, /etc/docker and /etc/containers)."""
    from hoist.paths import hoist_root
    from registry.client.tls import SYSTEM_CERTS_ROOTS

    return HttpFetcher((hoist_root(), *SYSTEM_CERTS_ROOTS))


class HttpFetcher:
    """``UrlFetcher`` for the CLI (``certs_roots``: the directories holding ``certs.d/``)."""

    def __init__(self, certs_roots: tuple[Path, ...] = ()) -> None:
        self.certs_roots = certs_roots

    def fetch(self, url: str, into: Path, max_bytes: int, if_none_match: str | None = None) -> Download:
        try:
            return asyncio.run(self._fetch(url, into, max_bytes, if_none_match))
        except BaseException:
            try:
                into.unlink()
            except FileNotFoundError:
                pass
            raise

    def _tls(self, url: URL) -> ssl.SSLContext | bool:
        """certs.d/<host:port>/ (docker's name for a host on a port), else certs.d/<host>/, plus
        the system CAs; the system CAs alone when neither exists."""
        assert url.host is not None
        names = [f"{url.host}:{url.explicit_port}", url.host] if url.explicit_port else [url.host]
        for name in names:
            try:
                ctx = tls_context(name, self.certs_roots)
            except ConfigurationError as e:
                raise FetchError(str(e)) from None
            if ctx is not None:
                return ctx
        return True

    async def _fetch(self, url: str, into: Path, max_bytes: int, if_none_match: str | None) -> Download:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=_read_timeout())
        current = URL(url)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True,
                                         headers={"User-Agent": "hoist-build"}) as session:
            for _ in range(MAX_REDIRECTS + 1):
                if current.scheme not in ("http", "https") or not current.host:
                    raise FetchError(f"{url}: refusing to follow a redirect to {str(current)[:200]!r} "
                                     "(only http and https URLs are fetched)")
                try:
                    headers = {"If-None-Match": if_none_match} if if_none_match else {}
                    async with session.get(current, allow_redirects=False, headers=headers,
                                           ssl=self._tls(current) if current.scheme == "https" else True,
                                           max_line_size=16 << 10, max_field_size=16 << 10) as resp:
                        if resp.status in REDIRECTS and "Location" in resp.headers:
                            current = current.join(URL(resp.headers["Location"]))
                            continue
                        if resp.status == 304 and if_none_match:
                            etag = resp.headers.get("ETag") or if_none_match
                            return Download(digest="", size=0, etag=etag, not_modified=True)
                        if resp.status < 200 or resp.status >= 400:
                            raise FetchError(f"{url}: invalid response status {resp.status}")
                        return await _save(resp, url, into, max_bytes)
                except (TimeoutError, aiohttp.ClientError, ValueError) as e:
                    raise FetchError(f"{url}: {_describe(e)}") from None
            raise FetchError(f"{url}: stopped after {MAX_REDIRECTS} redirects")


async def _save(resp: aiohttp.ClientResponse, url: str, into: Path, max_bytes: int) -> Download:
    fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    h = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as f:
        async for chunk in resp.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"{url}: the download is larger than the {max_bytes} bytes allowed "
                                 "(HOIST_UNPACK_MAX_BYTES, or the free-space reserve)")
            h.update(chunk)
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return Download(digest="sha256:" + h.hexdigest(), size=size, last_modified=resp.headers.get("Last-Modified"),
                    etag=resp.headers.get("ETag"))


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return f"no data for {_read_timeout():.0f}s (HOIST_ADD_READ_TIMEOUT)"
    if isinstance(e, aiohttp.ClientPayloadError):
        return f"the body broke off: {e}"
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"cannot connect: {e.os_error.strerror or e}" if e.os_error else f"cannot connect: {e}"
    return str(e) or type(e).__name__
