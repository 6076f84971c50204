"""The process spec: command line, environment, user resolution, option parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import ImageConfigInvalid, SetupError
from runtime.image import load_image
from runtime.spec import DEFAULT_PATH, build_env, command_line, parse_signal, parse_size, parse_volume, working_dir
from runtime.users import UserNotFound, resolve_user
from tests.images import GROUP, PASSWD, busybox_image

CMD_CASES = [
    # image Entrypoint, image Cmd, --entrypoint, args, expected
    (None, ["sh"], None, [], ["sh"]),
    (None, ["sh"], None, ["echo", "x"], ["echo", "x"]),
    (["ep"], ["a"], None, [], ["ep", "a"]),
    (["ep"], ["a"], None, ["b"], ["ep", "b"]),
    (["ep"], ["a"], "other", [], ["other"]),
    (["ep"], ["a"], "other", ["b"], ["other", "b"]),
    (["ep"], ["a"], "", ["b"], ["b"]),
]


@pytest.mark.parametrize("ep, cmd, override, args, expected", CMD_CASES)
def test_command_line(ep, cmd, override, args, expected) -> None:
    assert command_line({"Entrypoint": ep, "Cmd": cmd}, override, args) == expected


def test_no_command() -> None:
    with pytest.raises(ImageConfigInvalid, match="no command"):
        command_line({}, None, [])


def test_env_order_and_defaults() -> None:
    env = build_env(["A=1", "PATH=/x"], ["A=2", "B=3"], "h")
    assert env == ["PATH=/x", "HOSTNAME=h", "A=2", "B=3"]
    assert build_env(None, [], "h")[0] == f"PATH={DEFAULT_PATH}"


@pytest.fixture
def etc(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)
    return str(tmp_path / "passwd"), str(tmp_path / "group")


@pytest.mark.parametrize("spec, uid, gid, groups, home", [
    ("", 0, 0, (0, 10), "/root"),
    ("app", 1000, 1000, (1000, 50), "/home/app"),
    ("1000", 1000, 1000, (1000, 50), "/home/app"),
    ("app:staff", 1000, 50, (50,), "/home/app"),
    ("app:77", 1000, 77, (77,), "/home/app"),
    ("4242", 4242, 0, (0,), "/"),
    ("4242:4242", 4242, 4242, (4242,), "/"),
])
def test_resolve_user(etc, spec, uid, gid, groups, home) -> None:
    user = resolve_user(spec, *etc)
    assert (user.uid, user.gid, user.groups, user.home) == (uid, gid, groups, home)


def test_unknown_user_and_group(etc) -> None:
    with pytest.raises(UserNotFound, match="unable to find user ghost"):
        resolve_user("ghost", *etc)
    with pytest.raises(UserNotFound, match="unable to find group ghosts"):
        resolve_user("app:ghosts", *etc)
    assert resolve_user("7", "/nonexistent", "/nonexistent").uid == 7


def test_option_parsing(tmp_path: Path) -> None:
    assert parse_size("512m") == 512 << 20 and parse_size("1g") == 1 << 30 and parse_size("100") == 100
    assert parse_signal("SIGUSR1") == 10 and parse_signal("term") == 15 and parse_signal("9") == 9
    with pytest.raises(SetupError):
        parse_signal("SIGNOPE")
    vol = parse_volume(f"{tmp_path}:/data:ro")
    assert (vol.source, vol.target, vol.readonly) == (str(tmp_path), "/data", True)
    for bad in ("nocolon", f"{tmp_path}:rel", f"{tmp_path}:/x:rx", f"{tmp_path}/missing:/x"):
        with pytest.raises(SetupError):
            parse_volume(bad)
    with pytest.raises(ImageConfigInvalid):
        working_dir({"WorkingDir": "relative"}, None)


def test_image_lookup_by_name_and_id(tmp_path: Path) -> None:
    desc = busybox_image(tmp_path / "images", "registry.local:5000/team/app:1.4")
    img = load_image(tmp_path / "images", "registry.local:5000/team/app:1.4")
    assert img.ref == "registry.local:5000/team/app:1.4"
    assert load_image(tmp_path / "images", desc.digest.hex[:12]).manifest_digest == img.manifest_digest
    assert load_image(tmp_path / "images", img.config_digest[7:19]).config_digest == img.config_digest
    with pytest.raises(Exception, match="no image"):
        load_image(tmp_path / "images", "other")
