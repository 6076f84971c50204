"""``hoist build``: build an image from a Dockerfile, or ``--check`` it without building.

The pipeline is builder/'s: parse → typed instructions → stage graph → dispatch → execute →
export. Every error a build would hit before running anything is reported first, as
``--check`` reports it (``FILE:LINE: message``, exit 1). Base images come from the local store,
or are pulled with the registry client when missing (always with ``--pull``): this module is
the image source builder/ asks. Progress goes to stderr (BuildKit's plain format), the image id
(the config digest) to stdout (stderr when an output takes stdout). Nothing is tagged unless
the whole build succeeded.

Delivery (after the build): ``--output`` (``builder/outputs.py``), then the local tags, then
``--push`` of every ``-t``, then ``--cache-to``. ``--cache-from`` is read before the build
(``builder/remote_cache.py``); every registry call goes through ``hoist/build_registry.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.dockerignore import PatternMatcher, find_ignore_file, load_patterns
from builder.errors import BuilderError, DockerfileError, DockerignoreError
from builder.reference import normalised
from hoist.errors import UserError
from hoist.paths import hoist_root
from storage.errors import StorageError

# The frontend, the executor and the store are imported by the build that needs them: a build
# the memo answers (builder.memo) imports none of them.
if TYPE_CHECKING:
    from collections.abc import Iterable

    from builder.check import CheckReport
    from builder.source import BaseImage
    from storage.layout import ImageLayout
    from storage.manifest import Descriptor
    from storage.platform import Platform
    from builder.dispatch import LayerRef, StageState
    from builder.execute import BuildBackend
    from builder.progress import Progress
    from builder.lint import BuildCheck
    from hoist.build_memo import MemoRun
    from builder.outputs import OutputSpec
    from builder.remote_cache import CacheSpec, ImportedCache
    from builder.sshforward import SSHSource
    from hoist.build_registry import RegistryBridge

DEFAULT_DOCKERFILE = "Dockerfile"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("context", metavar="CONTEXT",
                        help="build context directory ('-': Dockerfile on stdin, no context)")
    parser.add_argument("-f", "--file", dest="file", help="Dockerfile path (default: CONTEXT/Dockerfile; '-': stdin)")
    parser.add_argument("--target", help="build only the stages this stage needs")
    parser.add_argument("--build-arg", dest="build_args", action="append", default=[], metavar="KEY[=VALUE]",
                        help="set a build argument (KEY alone takes the value from the environment)")
    parser.add_argument("--platform", help="target platform (another than the host's: no RUN without emulation)")
    parser.add_argument("-t", "--tag", dest="tags", action="append", default=[], metavar="NAME[:TAG]",
                        help="name the image (repeatable)")
    parser.add_argument("--check", action="store_true", help="parse and validate only; build nothing")
    parser.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    parser.add_argument("--pull", action="store_true", help="always pull base images")
    parser.add_argument("--label", dest="labels", action="append", default=[], metavar="KEY=VALUE",
                        help="add a label to the image")
    parser.add_argument("--format", choices=("oci", "docker"), default="oci", help="manifest media types")
    parser.add_argument("--compression", choices=("gzip", "zstd", "none"), default="gzip",
                        help="compression of the new layers")
    parser.add_argument("--network", choices=("host", "none"), default="host",
                        help="network of RUN steps (default: host)")
    parser.add_argument("--progress", choices=("auto", "plain", "tty"), default="auto", help="progress output")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    parser.add_argument("--iidfile", help="write the image id to this file")
    parser.add_argument("--secret", dest="secrets", action="append", default=[], metavar="id=ID,src=PATH|env=VAR",
                        help="a secret RUN --mount=type=secret can use (never stored in a layer or the cache)")
    parser.add_argument("--ssh", dest="ssh", action="append", default=[], metavar="default|ID[=SOCKET|KEY[,KEY]]",
                        help="an SSH agent (default: $SSH_AUTH_SOCK) or key files RUN --mount=type=ssh can use")
    parser.add_argument("--push", action="store_true", help="push every -t after the build (type=registry)")
    parser.add_argument("-o", "--output", dest="outputs", action="append", default=[],
                        metavar="type=TYPE[,dest=PATH]",
                        help="image (default), registry, oci, docker, local or tar; '-o DIR' is type=local")
    parser.add_argument("--cache-from", dest="cache_from", action="append", default=[],
                        metavar="type=registry,ref=REF", help="import a build cache from a registry (repeatable)")
    parser.add_argument("--cache-to", dest="cache_to", action="append", default=[],
                        metavar="type=registry,ref=REF[,mode=min|max]|type=inline",
                        help="export the build cache to a registry, or inline into the image")


def run(args: argparse.Namespace) -> int:
    no_context = args.context == "-"
    context = None if no_context else Path(args.context)
    if context is not None and not context.is_dir():
        raise UserError(f"build context {str(context)!r} is not a directory")
    if no_context or args.file == "-":
        data = sys.stdin.buffer.read()
        dockerfile = Path("-")
        name = "Dockerfile"
    else:
        assert context is not None
        dockerfile = Path(args.file) if args.file else context / DEFAULT_DOCKERFILE
        data = _read(dockerfile)
        name = str(dockerfile)
    build_args = parse_build_args(args.build_args)
    ignore_bytes, matcher, ignore_errors = (_read_ignore(context, dockerfile) if context is not None
                                            else (None, None, []))
    memo = None
    if not ignore_errors:
        from hoist.build_memo import MemoRun

        memo = MemoRun.open(args, data, context, build_args, matcher, ignore_bytes)
    if memo is not None:
        tags = [_tag(t) for t in args.tags]
        image_id = memo.answer(name, tags, lambda: _progress(args))
        if image_id is not None:
            return _finish(args, image_id, tags, image=True, stdout_taken=False)
        memo.walk()         # the context as it is before the build (what a memo of it records)
    from builder.check import check_dockerfile

    report = check_dockerfile(data, target=args.target, build_args=build_args, platform=args.platform,
                              ignore=matcher)
    if args.check:
        return _print_report(name, report, ignore_errors)
    if report.errors or ignore_errors:
        _print_errors(name, report, ignore_errors)
        return 1
    for warning in report.warnings:
        print(f"{name}: warning: {warning}", file=sys.stderr)
    return _build(args, report, name, context, matcher, memo)



class _LazyFetcher:
    """``ADD https://...``'s downloads (``hoist.fetch``: aiohttp and the registry client's CAs),
    imported by the first download, not by every build: start-up is most of a cached build."""

    def __init__(self) -> None:
        self._fetcher: Any = None

    def fetch(self, url: str, into: Path, max_bytes: int, if_none_match: str | None = None) -> Any:
        if self._fetcher is None:
            from hoist.fetch import cli_fetcher

            self._fetcher = cli_fetcher()
        return self._fetcher.fetch(url, into, max_bytes, if_none_match)


def _build(args: argparse.Namespace, report: CheckReport, name: str, context: Path | None,
           ignore: PatternMatcher | None, memo: MemoRun | None) -> int:
    from builder.execute import BuildBackend, BuildOptions, StepFailed, execute, start_prehash
    from builder.export import ExportError, export
    from builder.outputs import OutputError
    from builder.progress import RecordingProgress
    from builder.remote_cache import CacheSpecError
    from hoist.config import local_store
    from storage.platform import Platform

    assert report.graph is not None
    # Another platform than the host's is built as BuildKit builds it without emulation: its
    # base images are that platform's, COPY works, a RUN of its binaries is refused.
    try:
        target = Platform.parse(args.platform) if args.platform else Platform.host()
    except ValueError as e:
        raise UserError(f"invalid --platform {args.platform!r}: {e}") from None
    tags = [_tag(t) for t in args.tags]
    labels = {}
    for item in args.labels:
        key, _, value = item.partition("=")
        if not key:
            raise UserError(f"invalid --label {item!r}: expected KEY=VALUE")
        labels[key] = value
    try:
        plan = _plan(args, tags)
    except (OutputError, CacheSpecError) as e:
        raise UserError(str(e)) from None
    epoch = _epoch()
    layout = local_store()
    progress = RecordingProgress(_progress(args))
    try:
        opts = BuildOptions(root=hoist_root(), context=context.resolve() if context else None, ignore=ignore,
                            platform=target, explicit_platform=bool(args.platform), no_cache=args.no_cache,
                            compression=args.compression,
                            network=args.network, source_date_epoch=epoch, secrets=parse_secrets(args.secrets),
                            ssh=_parse_ssh(args.ssh), all_blobs=any(c.mode == "max" for c in plan.cache_to))
    except BuilderError as e:
        raise UserError(str(e)) from None
    source = CliImageSource(layout, args.pull)
    bound = _cache_bound()
    started = time.time()
    # The COPY sources are hashed while the client starts and the caches are imported.
    prehash = start_prehash(opts, report.graph)
    bridge = None
    backend: BuildBackend | None = None
    try:
        bridge = _bridge(layout) if plan.needs_registry(args.no_cache) else None
        with layout.lease():
            try:
                remote = None
                if bridge is not None and plan.cache_from and not args.no_cache:
                    from builder.remote_cache import import_caches
                    remote = import_caches(plan.cache_from, bridge, target, _warn)
                backend = BuildBackend(opts, layout, source, progress, report.graph, fetcher=_LazyFetcher(),
                                       remote=remote, prehash=prehash)
                state = execute(report.graph, backend)
                backend.blobs_for(plan.exported_stages(backend))
                late = _late_checks(report, backend.stages.values())
                extra = plan.inline_extra(backend, state)
                result = export(layout, state, [], created=float(epoch) if epoch is not None else started,
                                fmt=args.format, labels=labels, extra=extra, dated_by_layers=epoch is None)
            finally:
                progress.close()        # the last frame before anything else is printed
            _deliver(plan, layout, backend, state, result.manifest, tags, bridge, remote, args.quiet)
    except StepFailed as e:
        for line in e.tail:
            print(f"  > {line}", file=sys.stderr)
        print(f"{name}:{e.line}: {e.message}", file=sys.stderr)
        return 1
    except DockerfileError as e:
        where = f"{name}:{e.line}" if e.line is not None else name
        print(f"{where}: {e.message}", file=sys.stderr)
        return 1
    except (ExportError, BuilderError) as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"build failed: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")) from None
    finally:
        if prehash is not None:
            prehash.stop()
        if bridge is not None:
            bridge.close()
        if backend is not None and (unsynced := backend.close(wait=False)) is not None:
            _warn(f"the build's snapshots could not be written to disk ({unsynced.strerror or unsynced}); "
                  "after a reboot they are unpacked or rebuilt again")
    if bound is not None and backend.cache_grew:
        from hoist.disk_usage import bound_build_cache

        try:
            bound_build_cache(hoist_root(), bound)
        except (OSError, StorageError) as e:    # the build stands; the next one tries again
            _warn(f"the build cache could not be kept under its bound: {e}")
    for check in late:
        print(f"{name}: warning: {check}", file=sys.stderr)
    if memo is not None and remote is None and not plan.inline and not backend.remote_sources:
        memo.record(layout, images=source.resolved, entries=backend.cache.used,
                    snapshots=backend.lazy_snapshots(), manifest=result.manifest,
                    config=result.config, layers=[layer.digest for layer in state.layers],
                    image_id=result.image_id, steps=progress.steps, warnings=list(report.warnings),
                    late=[str(c) for c in late])
    return _finish(args, result.image_id, tags, image=plan.image is not None, stdout_taken=plan.stdout_taken)


def _finish(args: argparse.Namespace, image_id: str, tags: list[str], *, image: bool, stdout_taken: bool) -> int:
    """What every build that succeeded prints last, and the --iidfile."""
    if not args.quiet:
        print(f"writing image {image_id} done", file=sys.stderr)
        if image:
            for tag in tags:
                print(f"naming to {tag} done", file=sys.stderr)
    if args.iidfile:
        try:
            Path(args.iidfile).write_text(image_id)
        except OSError as e:
            raise UserError(f"cannot write {args.iidfile}: {e.strerror}") from None
    # An output on stdout owns it: the id goes to stderr then.
    print(image_id, file=sys.stderr if stdout_taken else sys.stdout)
    return 0


def _cache_bound() -> int | None:
    from builder.cache import build_cache_bound

    try:
        return build_cache_bound(hoist_root())
    except BuilderError as e:
        raise UserError(str(e)) from None


def _late_checks(report: CheckReport, stages: Iterable[StageState]) -> list[BuildCheck]:
    """The build checks only the build could find (the base images' ENV known: UndefinedVar),
    those ``--check`` did not already report; under ``# check=error=true`` the first fails the
    build before anything is exported or tagged (raises DockerfileError)."""
    from builder.lint import check_options

    assert report.dockerfile is not None
    options = check_options(report.dockerfile)
    seen = set(report.checks)
    late = [c for c in dict.fromkeys(c for s in stages for c in s.lint) if c not in seen and options.reports(c.rule)]
    late.sort(key=lambda c: (c.line or 0, c.rule))
    if late and options.error:
        raise DockerfileError(f"{late[0].rule}: {late[0].message}", late[0].line)
    return late


def _progress(args: argparse.Namespace) -> Progress:
    """``--progress``: ``auto`` is BuildKit's folded display when stderr is a terminal (and
    TERM is not ``dumb``), else the plain lines a CI log wants."""
    from builder.progress import PlainProgress, QuietProgress

    if args.quiet:
        return QuietProgress()
    mode = args.progress
    if mode == "auto":
        mode = "tty" if sys.stderr.isatty() and os.environ.get("TERM") != "dumb" else "plain"
    if mode == "tty":
        from hoist.progress import BuildTtyProgress

        try:
            fd = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
        if fd >= 0:
            sys.stderr.flush()
            return BuildTtyProgress(fd)
    return PlainProgress(_write_stderr)
def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def _bridge(layout: ImageLayout) -> RegistryBridge:
    from hoist.build_registry import RegistryBridge

    return RegistryBridge(layout)


class _Plan:
    """What the build delivers: outputs, pushes and cache imports and exports."""

    def __init__(self, outputs: list[OutputSpec], cache_from: list[CacheSpec], cache_to: list[CacheSpec]) -> None:
        self.outputs = outputs
        images = [o for o in outputs if o.type == "image"]
        self.image = images[0] if images else None
        self.push = any(o.push for o in images)
        self.files = [o for o in outputs if o.type != "image"]
        self.cache_from = cache_from
        self.cache_to = [c for c in cache_to if c.type == "registry"]
        self.inline = any(c.type == "inline" for c in cache_to)
        self.stdout_taken = any(o.to_stdout for o in outputs)

    def needs_registry(self, no_cache: bool) -> bool:
        return self.push or bool(self.cache_to) or (bool(self.cache_from) and not no_cache)

    def exported_stages(self, backend: BuildBackend) -> list[int]:
        """The stages whose layers an output reads: the image's, and with ``--cache-to
        mode=max`` every stage the build ran."""
        if any(c.mode == "max" for c in self.cache_to):
            return sorted(backend.stages)
        return backend.graph.image_stages()

    def inline_extra(self, backend: BuildBackend, state: StageState) -> dict[str, Any] | None:
        if not self.inline:
            return None
        from builder.remote_cache import INLINE_FIELD, inline_cache

        entries = backend.recorder.entries(backend.graph.image_stages(), primary_only=True)
        return {INLINE_FIELD: inline_cache(entries, state.layers)}


def _plan(args: argparse.Namespace, tags: list[str]) -> _Plan:
    from builder.outputs import OutputError, OutputSpec, check_destination, parse_output
    from builder.remote_cache import INLINE_BUILD_ARG, CacheSpec, parse_cache_spec

    outputs = [parse_output(o) for o in args.outputs] or [OutputSpec("image")]
    if args.push:
        outputs = [o for o in outputs if o.type != "image"] + [OutputSpec("image", push=True)]
    if any(o.push for o in outputs) and not tags:
        raise OutputError("--push needs at least one -t NAME to push to")
    if sum(1 for o in outputs if o.to_stdout) > 1:
        raise OutputError("only one --output can go to stdout")
    for output in outputs:
        check_destination(output)
    cache_from = [parse_cache_spec(c, "from", args.compression) for c in args.cache_from]
    cache_to = [parse_cache_spec(c, "to", args.compression) for c in args.cache_to]
    if parse_build_args(args.build_args).get(INLINE_BUILD_ARG, "") not in ("", "0", "false"):
        cache_to.append(CacheSpec("inline"))
    return _Plan(outputs, cache_from, cache_to)


def _deliver(plan: _Plan, layout: ImageLayout, backend: BuildBackend, state: StageState, image: Descriptor,
             tags: list[str], bridge: RegistryBridge | None, remote: ImportedCache | None, quiet: bool) -> None:
    """Outputs, local tags, pushes and the cache export, in that order; a refused push fails
    after the build with the registry's reason, the image kept locally."""
    from builder.outputs import write_output
    from registry.client.errors import ClientError

    if plan.files:
        backend.materialise(state.layers)
        for output in plan.files:
            write_output(output, layout, image, tags, lambda d: backend.rootfs_into(state.layers, d),
                         sys.stdout.buffer)
    if plan.image is not None and not plan.push:
        backend.materialise(state.layers)
        _tag_local(layout, image, tags)
    if plan.push:
        assert bridge is not None
        try:
            for tag in tags:
                pushed = bridge.push(tag, image, remote)
                if not quiet:
                    print(f"pushing {tag}: digest: {pushed.digest} size: {pushed.size} "
                          f"({pushed.uploaded} blobs uploaded)", file=sys.stderr)
        except (ClientError, StorageError) as e:
            kept = _keep_local(layout, backend, state, image, tags)
            raise UserError(f"push of {tag} failed: {e}; {kept}") from None
        if all(layout.has_blob(layer.digest) for layer in state.layers):
            _tag_local(layout, image, tags)
        elif not quiet:
            print("the image was pushed without loading it locally (its layers stayed in the registry); "
                  f"'hoist pull {tags[0]}' fetches it", file=sys.stderr)
    for spec in plan.cache_to:
        assert bridge is not None and spec.ref is not None
        try:
            _export_cache(layout, bridge, backend, spec, remote, quiet)
        except (ClientError, StorageError) as e:
            if spec.ignore_error:
                _warn(f"cache export to {spec.ref} failed: {e}")
                continue
            raise UserError(f"cache export to {spec.ref} failed: {e}") from None


def _tag_local(layout: ImageLayout, image: Descriptor, tags: list[str]) -> None:
    for tag in tags:
        layout.tag(tag, image)


def _keep_local(layout: ImageLayout, backend: BuildBackend, state: StageState, image: Descriptor,
                tags: list[str]) -> str:
    """After a refused push: the image tagged in the local store (its remote layers fetched)."""
    try:
        backend.materialise(state.layers)
    except DockerfileError as e:
        return f"the image is not kept locally either ({e.message})"
    _tag_local(layout, image, tags)
    return f"the image is kept locally as {', '.join(tags)}"


def _export_cache(layout: ImageLayout, bridge: RegistryBridge, backend: BuildBackend, spec: CacheSpec,
                  remote: ImportedCache | None, quiet: bool) -> None:
    """Push the cache artifact for ``spec``: the artifact form, or the image-manifest form when
    the registry refuses that (or when asked with image-manifest=true)."""
    from builder.remote_cache import cache_config, cache_manifest
    from registry.client.errors import ProtocolError, ServerError
    from storage import mediatypes as mt

    assert spec.ref is not None
    stages = backend.graph.image_stages() if spec.mode == "min" else list(backend.stages)
    mounts = _mount_layers(layout, backend) if spec.options.get("mounts") == "true" else None
    config_raw, layers = cache_config(backend.recorder.entries(stages), mounts)
    config_digest = layout.put_blob(config_raw)
    forms = ["image-manifest"] if spec.options.get("image-manifest", "").lower() == "true" \
        else ["artifact", "image-manifest"]
    for form in forms:
        desc = layout.put_json(cache_manifest(str(config_digest), len(config_raw), layers, form), mt.OCI_MANIFEST)
        try:
            pushed = bridge.push(spec.ref, desc, remote)
        except ProtocolError as e:
            if isinstance(e, ServerError) or form == forms[-1]:
                raise
            _warn(f"{spec.ref} refused the cache as an OCI artifact ({e}); pushing it as an image manifest")
            continue
        if not quiet:
            with_mounts = f", {len(mounts)} cache mounts" if mounts else ""
            print(f"exporting cache to {spec.ref}: digest: {pushed.digest} ({len(layers)} layers{with_mounts}, "
                  f"{pushed.uploaded} blobs uploaded)", file=sys.stderr)
        return


def _mount_layers(layout: ImageLayout, backend: BuildBackend) -> dict[tuple[str, str], LayerRef]:
    """``mounts=true``: each cache mount the build used, its instance's tree as a layer blob in
    the local store (the build's compression; reproducible, so an unchanged cache is the same
    blob and its push a HEAD)."""
    from builder.dispatch import LayerRef
    from builder.errors import LayerError
    from builder.layers import layer_from_upper

    out = {}
    for key, path in sorted(backend.used_mounts.items()):
        try:
            blob = layer_from_upper(path, layout, backend.opts.compression, backend.opts.source_date_epoch)
        except LayerError as e:     # e.g. another build changing it as it is read: that mount only
            _warn(f"cache mount {key[0]!r} not exported: {e}")
            continue
        out[key] = LayerRef(str(blob.digest), str(blob.diff_id), blob.size, blob.media_type)
    return out


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


class CliImageSource:
    """The local store, and the registry client when the image is not there (or with --pull)."""

    def __init__(self, layout: ImageLayout, pull: bool) -> None:
        self.layout = layout
        self.pull = pull
        self.pulled: set[tuple[str, Platform]] = set()
        self.resolved: list[tuple[str, str]] = []   # (name, manifest digest): what the build memo checks

    def resolve(self, ref: str, platform: Platform) -> BaseImage:
        base = self._resolve(ref, platform)
        self.resolved.append((base.ref, base.digest))
        return base

    def _resolve(self, ref: str, platform: Platform) -> BaseImage:
        from builder.source import PlatformMismatch, SourceError, normalise, read_local

        name = normalise(ref)
        mismatch: SourceError | None = None
        if not self.pull or (name, platform) in self.pulled:
            try:
                return read_local(self.layout, name, platform)
            except PlatformMismatch as e:
                mismatch = e
            except SourceError:
                pass
        try:
            self._pull(name, platform)
        except SourceError as e:
            if mismatch is None:
                raise
            raise SourceError(f"{mismatch}, and pulling it failed: {e}") from None
        self.pulled.add((name, platform))
        # What the registry has may be a single-platform image of another platform: BuildKit
        # builds on it (the executor warns InvalidBaseImagePlatform).
        return read_local(self.layout, name, platform, any_platform=True)

    def _pull(self, name: str, platform: Platform) -> None:
        import asyncio

        from builder.source import SourceError

        from hoist.config import open_client, parse_ref
        from registry.client.pull import pull

        reference = parse_ref(name)

        async def fetch() -> None:
            from registry.client.errors import PlatformNotFound
            from registry.client.pull import fetch_manifest

            async with open_client(reference.domain) as client:
                try:
                    await pull(client, reference, self.layout, platform=platform)
                except PlatformNotFound:
                    # A single-platform image of another platform is still the image (BuildKit
                    # pulls it); an index without the platform is the error it was.
                    _, named = await fetch_manifest(client, reference.name, str(reference.digest or reference.tag),
                                                    reference.digest)
                    if named.is_index:
                        raise
                    await pull(client, reference, self.layout)

        try:
            asyncio.run(fetch())
        except UserError as e:
            raise SourceError(f"{name}: {e}") from None
        except Exception as e:  # the client's errors carry their own one-line message
            raise SourceError(f"failed to resolve source metadata for {name}: {e}") from None


def _parse_ssh(values: list[str]) -> dict[str, SSHSource]:
    if not values:
        return {}       # builder.sshforward (socket, subprocess) only for a build with --ssh
    from builder.sshforward import parse_ssh

    return parse_ssh(values)


def parse_secrets(values: list[str]) -> dict[str, bytes]:
    """``id=ID,src=PATH`` (or ``source=``), ``id=ID,env=VAR``; ``id=ID`` alone reads the
    environment variable ID, as docker build does."""
    secrets: dict[str, bytes] = {}
    for item in values:
        fields = dict(part.partition("=")[::2] for part in item.split(","))
        secret_id = fields.pop("id", "")
        src = fields.pop("src", None) or fields.pop("source", None)
        env = fields.pop("env", None)
        fields.pop("type", None)
        if not secret_id or fields:
            raise UserError(f"invalid --secret {item!r}: expected id=ID,src=PATH or id=ID,env=VAR")
        if src is not None:
            try:
                secrets[secret_id] = Path(src).read_bytes()
            except OSError as e:
                raise UserError(f"secret {secret_id}: cannot read {src}: {e.strerror}") from None
        else:
            name = env or secret_id
            if name not in os.environ:
                raise UserError(f"secret {secret_id}: environment variable {name} is not set")
            secrets[secret_id] = os.environ[name].encode()
    return secrets


def _tag(text: str) -> str:
    try:
        return normalised(text)
    except ValueError as e:
        raise UserError(f"invalid tag {text!r}: {e}") from None


def _epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    if not value.isdigit():
        raise UserError(f"invalid SOURCE_DATE_EPOCH {value!r}: expected seconds since 1970")
    return int(value)


def _read_ignore(context: Path, dockerfile: Path
                 ) -> tuple[bytes | None, PatternMatcher | None, list[tuple[str, DockerignoreError]]]:
    """The ignore file of a build of ``context`` (a Dockerfile on stdin has no file of its own),
    read once: its bytes, its matcher, and its errors (then no matcher)."""
    path = find_ignore_file(context, dockerfile if str(dockerfile) != "-" else None)
    if path is None:
        return None, None, []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {str(path)!r}: {e.strerror}") from None
    try:
        return data, load_patterns(data), []
    except DockerignoreError as e:
        return data, None, [(str(path), e)]


def parse_build_args(values: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs; a bare ``KEY`` takes its value from the environment, if set."""
    result: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise UserError(f"invalid --build-arg {item!r}: expected KEY=VALUE")
        if eq:
            result[key] = value
        elif key in os.environ:
            result[key] = os.environ[key]
    return result


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"Dockerfile {str(path)!r} not found", hint="pass its path with -f") from None
    except IsADirectoryError:
        raise UserError(f"Dockerfile {str(path)!r} is a directory", hint="pass the file's path with -f") from None
    except OSError as e:
        raise UserError(f"cannot read Dockerfile {str(path)!r}: {e.strerror}") from None


def _print_errors(name: str, report: CheckReport, ignore_errors: list[tuple[str, DockerignoreError]]) -> None:
    for error in report.errors:
        where = f"{name}:{error.line}" if error.line is not None else name
        print(f"{where}: {error.message}", file=sys.stderr)
    for path, ignore_error in ignore_errors:
        where = f"{path}:{ignore_error.line}" if ignore_error.line is not None else path
        print(f"{where}: {ignore_error.message}", file=sys.stderr)


def _print_report(name: str, report: CheckReport, ignore_errors: list[tuple[str, DockerignoreError]]) -> int:
    _print_errors(name, report, ignore_errors)
    for warning in report.warnings:
        # Build checks print as BuildKit prints them ("WARN: Rule: message (line N)").
        print(warning if warning.startswith("WARN: ") else f"{name}: warning: {warning}", file=sys.stderr)
    if report.errors or ignore_errors:
        return 1
    assert report.dockerfile is not None and report.graph is not None
    stages = len(report.dockerfile.stages)
    needed = len(report.graph.order)
    target = report.graph.target_stage.display_name
    print(f"{name}: ok ({stages} stage{'s' if stages != 1 else ''}, target {target} needs {needed})")
    return 0
