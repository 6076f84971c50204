"""Wire names of the Dockerfile language, in one place.

Instruction keywords, parser directives, flag values and the predefined build arguments are
spelled here and nowhere else; the parser, the instruction typing, the stage graph and the
tests all import them.
"""

from __future__ import annotations

# Instruction keywords, upper case as the typed instructions report them.
ADD = "ADD"
ARG = "ARG"
CMD = "CMD"
COPY = "COPY"
ENTRYPOINT = "ENTRYPOINT"
ENV = "ENV"
EXPOSE = "EXPOSE"
FROM = "FROM"
HEALTHCHECK = "HEALTHCHECK"
LABEL = "LABEL"
MAINTAINER = "MAINTAINER"
ONBUILD = "ONBUILD"
RUN = "RUN"
SHELL = "SHELL"
STOPSIGNAL = "STOPSIGNAL"
USER = "USER"
VOLUME = "VOLUME"
WORKDIR = "WORKDIR"

INSTRUCTIONS: frozenset[str] = frozenset({
    ADD, ARG, CMD, COPY, ENTRYPOINT, ENV, EXPOSE, FROM, HEALTHCHECK, LABEL, MAINTAINER,
    ONBUILD, RUN, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR,
})

# Instructions whose (non-JSON) form may carry heredocs; ONBUILD may wrap one of them.
HEREDOC_INSTRUCTIONS: frozenset[str] = frozenset({ADD, COPY, RUN})
HEREDOC_WRAPPERS: frozenset[str] = frozenset({ONBUILD})

# ONBUILD triggers BuildKit refuses at definition time.
FORBIDDEN_ONBUILD_TRIGGERS: frozenset[str] = frozenset({ONBUILD, FROM, MAINTAINER})

# Parser directives (lower case, as BuildKit normalises them).
DIRECTIVE_SYNTAX = "syntax"
DIRECTIVE_ESCAPE = "escape"
DIRECTIVE_CHECK = "check"
DIRECTIVES: frozenset[str] = frozenset({DIRECTIVE_SYNTAX, DIRECTIVE_ESCAPE, DIRECTIVE_CHECK})
ESCAPE_TOKENS: frozenset[str] = frozenset({"\\", "`"})
DEFAULT_ESCAPE = "\\"

# FROM
STAGE_KEYWORD_AS = "AS"
SCRATCH = "scratch"

# Flags by instruction (the names after "--").
FLAG_PLATFORM = "platform"
FLAG_FROM = "from"
FLAG_CHOWN = "chown"
FLAG_CHMOD = "chmod"
FLAG_LINK = "link"
FLAG_EXCLUDE = "exclude"
FLAG_PARENTS = "parents"
FLAG_CHECKSUM = "checksum"
FLAG_KEEP_GIT_DIR = "keep-git-dir"
FLAG_UNPACK = "unpack"
FLAG_MOUNT = "mount"
FLAG_NETWORK = "network"
FLAG_SECURITY = "security"
FLAG_INTERVAL = "interval"
FLAG_TIMEOUT = "timeout"
FLAG_START_PERIOD = "start-period"
FLAG_START_INTERVAL = "start-interval"
FLAG_RETRIES = "retries"

# RUN --mount
MOUNT_BIND = "bind"
MOUNT_CACHE = "cache"
MOUNT_TMPFS = "tmpfs"
MOUNT_SECRET = "secret"
MOUNT_SSH = "ssh"
MOUNT_TYPES: frozenset[str] = frozenset({MOUNT_BIND, MOUNT_CACHE, MOUNT_TMPFS, MOUNT_SECRET, MOUNT_SSH})
MOUNT_SHARING: frozenset[str] = frozenset({"shared", "private", "locked"})

# RUN --network / --security
NETWORK_MODES: frozenset[str] = frozenset({"default", "none", "host"})
SECURITY_MODES: frozenset[str] = frozenset({"sandbox", "insecure"})

# HEALTHCHECK
HEALTHCHECK_NONE = "NONE"
HEALTHCHECK_CMD = "CMD"
HEALTHCHECK_CMD_SHELL = "CMD-SHELL"

# EXPOSE protocols
PORT_PROTOCOLS: frozenset[str] = frozenset({"tcp", "udp", "sctp"})

# Build arguments every Dockerfile may use without a global declaration.
PROXY_ARGS: tuple[str, ...] = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)
TARGET_PLATFORM_ARGS: tuple[str, ...] = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT")
BUILD_PLATFORM_ARGS: tuple[str, ...] = ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")
PLATFORM_ARGS: tuple[str, ...] = TARGET_PLATFORM_ARGS + BUILD_PLATFORM_ARGS
PREDEFINED_ARGS: frozenset[str] = frozenset(PROXY_ARGS + PLATFORM_ARGS)
