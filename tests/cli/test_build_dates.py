"""When a built image says it was made, as BuildKit dates it (checked against docker 20.10's
BuildKit: a rebuild that hits the cache for every layer is the same image id; a rebuild that only
changes metadata keeps the date of its last layer; a changed layer dates the image anew; a
metadata-only image on a base takes the base's last layer's date). SOURCE_DATE_EPOCH, when given,
still dates everything."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cli.helpers import Hoist
from tests.images import busybox_image


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    hoist = Hoist(tmp_path)
    hoist.env.pop("SOURCE_DATE_EPOCH", None)
    busybox_image(hoist.images)
    return hoist


def _build(h: Hoist, ctx: Path, dockerfile: str, tag: str) -> dict:
    (ctx / "Dockerfile").write_text(dockerfile)
    h("build", "-q", "-t", tag, str(ctx))
    return json.loads(h("inspect", tag).out)[0]  # type: ignore[no-any-return]


def _history(info: dict) -> list[str]:
    return [entry["created"] for entry in info["History"]] if "History" in info else []


def test_cached_rebuilds_keep_the_date_and_the_id(h: Hoist, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("one\n")
    first = _build(h, ctx, "FROM busybox\nENV E=1\nCOPY a.txt /a.txt\nLABEL x=y\n", "dated:1")
    time.sleep(1.1)                                   # a later second: a new date would show
    again = _build(h, ctx, "FROM busybox\nENV E=1\nCOPY a.txt /a.txt\nLABEL x=y\n", "dated:2")
    assert again["Id"] == first["Id"] and again["Created"] == first["Created"]

    # Only metadata changed: a new image, still dated by its (cached) last layer.
    relabelled = _build(h, ctx, "FROM busybox\nENV E=1\nCOPY a.txt /a.txt\nLABEL x=z\n", "dated:3")
    assert relabelled["Id"] != first["Id"] and relabelled["Created"] == first["Created"]

    # A changed file: a new layer, a new date, and its history entry says so.
    (ctx / "a.txt").write_text("two\n")
    changed = _build(h, ctx, "FROM busybox\nENV E=1\nCOPY a.txt /a.txt\nLABEL x=z\n", "dated:4")
    assert changed["Created"] > first["Created"]

    # FROM an image hoist built, with metadata only: the base's last layer's date.
    on_base = _build(h, ctx, "FROM dated:4\nLABEL more=1\n", "dated:5")
    assert on_base["Created"] == changed["Created"]


def test_source_date_epoch_still_dates_everything(h: Hoist, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("one\n")
    _build(h, ctx, "FROM busybox\nCOPY a.txt /a.txt\n", "plain:1")
    h.env["SOURCE_DATE_EPOCH"] = "1700000000"
    pinned = _build(h, ctx, "FROM busybox\nCOPY a.txt /a.txt\n", "pinned:1")
    assert pinned["Created"].startswith("2023-11-14T22:13:20")
