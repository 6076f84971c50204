"""Run one probe under hoist and under docker's defaults, and print both columns.

``Versus(hoist, dockerd)`` copies a test image from the hoist store into the private dockerd
(skopeo, once per tag) and runs the same command with ``hoist run --rm`` and ``docker run --rm
--network none`` (or the flags given). Each result is (exit code, stdout + stderr) and lands in
the test log as a two-column table, so a reader sees what docker does beside what hoist does.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from tests.peers import Dockerd, need_tool
from tests.runtime.conftest import Hoist


@dataclass
class Outcome:
    code: int
    output: str

    @classmethod
    def of(cls, res: subprocess.CompletedProcess) -> Outcome:
        return cls(res.returncode, (res.stdout + res.stderr).decode(errors="replace").strip())


@dataclass
class Versus:
    hoist: Hoist
    dockerd: Dockerd | None
    loaded: set[str] = field(default_factory=set)

    def _load(self, ref: str) -> str:
        tag = "versus-" + ref.replace(":", "-").replace("/", "-")
        if tag not in self.loaded:
            assert self.dockerd is not None
            skopeo = need_tool("skopeo")
            subprocess.run([skopeo, "copy", "--dest-daemon-host", f"unix://{self.dockerd.socket}",
                            f"oci:{self.hoist.root / 'images'}:docker.io/library/{ref}",
                            f"docker-daemon:{tag}:latest"], check=True, capture_output=True, timeout=300)
            self.loaded.add(tag)
        return f"{tag}:latest"

    def run(self, probe: str, image: str, argv: list[str], hoist_flags: list[str] = (),
            docker_flags: list[str] | None = None) -> tuple[Outcome, Outcome | None]:
        ours = Outcome.of(self.hoist("run", "--rm", *hoist_flags, image, *argv))
        theirs = None
        if self.dockerd is not None:
            flags = list(hoist_flags) if docker_flags is None else docker_flags
            if "--network" not in flags:
                flags = ["--network", "none", *flags]
            tag = self._load(image if ":" in image else f"{image}:latest")
            theirs = Outcome.of(self.dockerd("run", "--rm", *flags, tag, *argv, check=False))
        print(f"\n[{probe}]")
        print(f"  hoist : exit {ours.code:3d}  {ours.output[:300]!r}")
        if theirs is not None:
            print(f"  docker: exit {theirs.code:3d}  {theirs.output[:300]!r}")
        return ours, theirs
