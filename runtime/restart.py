"""Restart policies (``--restart``), with docker's semantics (moby's restartmanager).

The per-container monitor owns a :class:`RestartManager` for as long as it lives and asks it,
after every exit, whether to run the container's command again and after what delay:

- ``no`` never; ``always`` always; ``unless-stopped`` unless the user stopped it;
  ``on-failure[:N]`` when the exit code is not 0, at most N times (0: no limit);
- a user's ``stop`` (or ``kill`` with SIGKILL or the stop signal) is never a failure: the monitor
  sees ``manually_stopped`` in the state and does not restart, whatever the policy;
- the delay starts at 100 ms and doubles at every restart up to one minute, and falls back to
  100 ms after a run that stayed up 10 seconds or more, so a crash loop is backed off, never spun.

After a host reboot no monitor is left; ``hoist start --all-restartable`` (run at boot by
``contrib/systemd/hoist-restart.service``) starts the containers :func:`restart_at_boot` picks,
as dockerd does when it starts: ``always`` whether or not the user had stopped it,
``unless-stopped`` unless the user had, ``on-failure`` when its last exit was a failure (a
container the reboot ended counts as exited 255) and it has retries left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.errors import SetupError

POLICIES = ("no", "always", "unless-stopped", "on-failure")
DEFAULT_DELAY = 0.1      # seconds
MAX_DELAY = 60.0
MULTIPLIER = 2
RESET_AFTER = 10.0       # seconds up after which the delay starts again from DEFAULT_DELAY


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """docker's ``--restart`` syntax and checks (``NAME[:MAX]``; MAX only for on-failure)."""
        name, sep, count_text = text.partition(":")
        if sep and not name:
            raise SetupError("invalid restart policy format: no policy provided before colon")
        count = 0
        if count_text:
            try:
                count = int(count_text, 10)
            except ValueError:
                raise SetupError(f"invalid restart policy format: maximum retry count must be an integer "
                                 f"(got {count_text!r})") from None
        if name not in POLICIES:
            raise SetupError(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                             f"'on-failure', or 'unless-stopped'")
        if name != "on-failure" and count != 0:
            raise SetupError("invalid restart policy: maximum retry count can only be used with 'on-failure'"
                             + (" and cannot be negative" if count < 0 else ""))
        if count < 0:
            raise SetupError("invalid restart policy: maximum retry count cannot be negative")
        return cls(name, count)

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> RestartPolicy:
        if not doc:
            return cls()
        return cls(str(doc.get("Name") or "no"), int(doc.get("MaximumRetryCount") or 0))

    def to_json(self) -> dict[str, Any]:
        """docker's HostConfig.RestartPolicy."""
        return {"Name": self.name, "MaximumRetryCount": self.maximum_retry_count}

    @property
    def is_none(self) -> bool:
        return self.name == "no"

    def __str__(self) -> str:
        return f"{self.name}:{self.maximum_retry_count}" if self.maximum_retry_count else self.name


class RestartManager:
    """The monitor's decision after each exit; ``restart_count`` is the container's RestartCount."""

    def __init__(self, policy: RestartPolicy, restart_count: int = 0) -> None:
        self.policy = policy
        self.restart_count = restart_count
        self.delay = 0.0

    def should_restart(self, exit_code: int, manually_stopped: bool, ran_for: float) -> tuple[bool, float]:
        """(restart?, after how many seconds). Counts the restart when the answer is yes."""
        if manually_stopped:
            return False, 0.0
        if ran_for >= RESET_AFTER:
            self.delay = 0.0
        self.delay = DEFAULT_DELAY if self.delay == 0 else min(self.delay * MULTIPLIER, MAX_DELAY)
        policy = self.policy
        if policy.name == "always" or policy.name == "unless-stopped":
            restart = True
        elif policy.name == "on-failure":
            limit = policy.maximum_retry_count
            restart = exit_code != 0 and (limit == 0 or self.restart_count < limit)
        else:
            restart = False
        if not restart:
            return False, 0.0
        self.restart_count += 1
        return True, self.delay


def restart_at_boot(policy: RestartPolicy, state: dict[str, Any], exit_code: int) -> bool:
    """Whether ``hoist start --all-restartable`` starts a container that is not running."""
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not state.get("manually_stopped", False)
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        count = int(state.get("restart_count") or 0)
        return exit_code != 0 and not state.get("manually_stopped", False) and (limit == 0 or count < limit)
    return False
