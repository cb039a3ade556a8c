"""The shared-layer property of `--oci-image`, from the images' own manifests: the same
env on another base shares every env layer, and an env one package larger shares all but
that package's layer and the last (conda-meta) layer."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from devtools.bench.measure import sh
from devtools.fixtures.channel import build as build_fixture

Layers = dict[str, int]  # digest → compressed size, in the manifest's order


@dataclass(frozen=True)
class Sharing:
    lines: list[str]
    figures: dict[str, float | None]


def image_layers(archive: Path) -> Layers:
    """The layers of the one image in an OCI image archive (what `envpack --oci-image` writes)."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict[str, object]:
            member = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert member is not None
            return dict(json.load(member))

        index = tar.extractfile("index.json")
        assert index is not None
        manifest = blob(str(json.load(index)["manifests"][0]["digest"]))
        layers = manifest["layers"]
        assert isinstance(layers, list)
        return {str(layer["digest"]): int(layer["size"]) for layer in layers}


def extra_package() -> Path:
    """One real package the bench env lacks and needing nothing: the fixture's static busybox
    (about 1 MB packed, 2 MB installed, so it gets a layer of its own)."""
    found = sorted((build_fixture().root / "linux-64").glob("busybox-*.conda"))
    assert found, "the fixture channel has no linux-64 busybox"
    return found[0]


def compare(base_layers: Layers, v1: Layers, scratch: Layers, v2: Layers) -> Sharing:
    env = {d: n for d, n in v1.items() if d not in base_layers}
    on_scratch = sum(n for d, n in env.items() if d in scratch)
    v2_env = {d: n for d, n in v2.items() if d not in base_layers}
    new = {d: n for d, n in v2_env.items() if d not in v1}
    share_scratch = on_scratch / sum(env.values())
    share_v2 = 1 - sum(new.values()) / sum(v2_env.values())
    lines = [
        f"Shared layers: the env on scratch instead of the base shares {share_scratch:.1%} of "
        f"the env's layer bytes ({sum(1 for d in env if d in scratch)} of {len(env)} layers). "
        f"The env plus one package (static busybox) shares {share_v2:.1%} of its env layer "
        f"bytes with the first image: {len(new)} new layers of {len(v2_env)}, "
        f"{sum(new.values()) / 1e6:.2f} MB (the package's layer and the conda-meta layer).",
    ]
    figures: dict[str, float | None] = {
        "image_env_layers_shared_across_bases": share_scratch,
        "image_env_layers_shared_after_one_package": share_v2,
        "image_new_layers_after_one_package": float(len(new)),
    }
    return Sharing(lines, figures)


def measure_sharing(ours: list[str | Path], image: Path, base: Path, tmp: Path) -> Sharing:
    """`ours` is the envpack --oci-image command that wrote `image` on `base`; build the two
    variants beside it and compare their layers."""
    at = ours.index("-o")
    scratch, v2 = tmp / "scratch.oci.tar", tmp / "plus-one.oci.tar"
    no_base = [c for i, c in enumerate(ours) if c != "--base" and ours[i - 1] != "--base"]
    sh(*[scratch if c == image else c for c in no_base])
    sh(*ours[:at], "-o", v2, *ours[at + 2 :], "--inject", extra_package())
    return compare(image_layers(base), image_layers(image), image_layers(scratch), image_layers(v2))
