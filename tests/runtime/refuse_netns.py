"""A command run with the kernel refusing new network namespaces (EPERM from unshare and clone with
CLONE_NEWNET, ENOSYS from clone3 so callers fall back to clone), as a locked-down host does:
``python refuse_netns.py CMD ARGS...`` (tests/runtime/test_network.py)."""

from __future__ import annotations

import errno
import os
import sys

import pyseccomp as scmp

CLONE_NEWNET = 0x40000000

if __name__ == "__main__":
    refusing = scmp.SyscallFilter(scmp.ALLOW)
    for call in ("unshare", "clone"):
        refusing.add_rule(scmp.ERRNO(errno.EPERM), call, scmp.Arg(0, scmp.MASKED_EQ, CLONE_NEWNET, CLONE_NEWNET))
    refusing.add_rule(scmp.ERRNO(errno.ENOSYS), "clone3")
    refusing.load()
    os.execvp(sys.argv[1], sys.argv[1:])
