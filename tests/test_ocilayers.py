"""ocilayers: the grouping rule (stable across envs, bounded) and the reproducible layer blob."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from envpack.packer.ocilayers import (
    BUCKETS,
    LARGE,
    MAX_LAYERS,
    Part,
    group,
    write_blob,
    write_layer,
)


def _parts(count: int, size: int, prefix: str = "pkg") -> list[Part]:
    return [Part(f"{prefix}{i}", (f"app/env/lib/{prefix}{i}.so",), size) for i in range(count)]


def test_large_packages_alone_small_ones_bucketed() -> None:
    parts = [*_parts(3, LARGE * 5, "big"), *_parts(40, 10, "small")]
    groups = group(parts)
    alone = [g for g in groups if g.packages[0].startswith("big")]
    assert [g.packages for g in alone] == [("big0",), ("big1",), ("big2",)]
    small = [g for g in groups if g.packages[0].startswith("small")]
    assert 1 < len(small) <= BUCKETS
    assert sorted(n for g in small for n in g.packages) == sorted(f"small{i}" for i in range(40))


def test_adding_a_package_changes_at_most_one_group() -> None:
    parts = _parts(60, 100)
    before = {g.packages: g.files for g in group(parts)}
    after = {g.packages: g.files for g in group([*parts, Part("newcomer", ("app/x",), 5)])}
    changed = [k for k in after if k not in before]
    assert len(changed) == 1 and "newcomer" in changed[0]
    gone = [k for k in before if k not in after]
    assert len(gone) <= 1


def test_grouping_ignores_input_order() -> None:
    parts = [*_parts(30, 10), *_parts(5, LARGE, "big")]
    assert group(parts) == group(list(reversed(parts)))


def test_never_more_than_the_layer_limit() -> None:
    groups = group(_parts(300, LARGE * 2))
    assert len(groups) <= MAX_LAYERS - 1
    assert sorted(n for g in groups for n in g.packages) == sorted(f"pkg{i}" for i in range(300))


def _tree(root: Path) -> list[str]:
    (root / "app/env/bin").mkdir(parents=True)
    (root / "app/env/lib/deep").mkdir(parents=True)
    (root / "app/env/bin/tool").write_text("#!/bin/sh\n")
    (root / "app/env/bin/tool").chmod(0o700)
    (root / "app/env/lib/deep/data.txt").write_text("data\n")
    (root / "app/env/lib/deep/data.txt").chmod(0o600)
    (root / "app/env/lib/link").symlink_to("deep/data.txt")
    return ["app/env/lib/link", "app/env/bin/tool", "app/env/lib/deep/data.txt"]


def test_layer_is_reproducible_and_normalised(tmp_path: Path) -> None:
    files = _tree(tmp_path / "root")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = write_layer(tmp_path / "root", files, tmp_path / "a", ["x"])
    (tmp_path / "root/app/env/bin/tool").touch()  # a new mtime changes nothing
    two = write_layer(tmp_path / "root", reversed(files), tmp_path / "b", ["x"])
    assert (one.digest, one.diff_id, one.size) == (two.digest, two.diff_id, two.size)
    data = one.path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == one.digest == one.path.name
    assert data[3] == 0 and data[4:8] == b"\0\0\0\0"  # no file name flag, mtime 0
    raw = gzip.decompress(data)
    assert hashlib.sha256(raw).hexdigest() == one.diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    names = list(members)
    assert names == sorted(names)
    assert {"app", "app/env", "app/env/bin", "app/env/lib", "app/env/lib/deep"} <= set(names)
    assert members["app/env/bin/tool"].mode == 0o755
    assert members["app/env/lib/deep/data.txt"].mode == 0o644
    assert members["app/env/lib/link"].issym()
    assert members["app/env/lib/link"].linkname == "deep/data.txt"
    assert all(
        m.mtime == 0 and m.uid == m.gid == 0 and m.uname == m.gname == "" for m in members.values()
    )


def test_blob_named_by_its_digest(tmp_path: Path) -> None:
    digest = write_blob(tmp_path, b"{}")
    assert (tmp_path / digest).read_bytes() == b"{}"
    assert digest == hashlib.sha256(b"{}").hexdigest()
