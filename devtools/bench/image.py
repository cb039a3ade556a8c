"""`--oci-image` against `docker build` of a two-stage Dockerfile running the static envunpack."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import docker
import docker.errors

from devtools.bench.common import BIN, FROZEN, NOT_BUILT, frozen_available, say
from devtools.bench.measure import Contestant, median, race, ratio, sh
from devtools.bench.sharedlayers import measure_sharing
from devtools.bench.tables import Section, secs, table
from devtools.bench.workspace import Workspace
from devtools.ociimages import base_image

BASE_TAG = "envpack-bench/base:bookworm"
DOCKER_TAG = "envpack-bench/docker-build:latest"
OURS_TAG = "envpack-bench/oci-image:latest"
# The label marks this bench's images, so the first stage's leftovers can be pruned alone.
LABEL = "dev.envpack.bench=image"
DOCKERFILE = f"""FROM {BASE_TAG} AS unpack
LABEL {LABEL}
COPY envunpack env.tar /tmp/
RUN /tmp/envunpack /tmp/env.tar -o /app -q
FROM {BASE_TAG}
COPY --from=unpack /app /app
ENV PATH=/app/env/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV CONDA_PREFIX=/app/env
"""


def bench_image(ws: Workspace, runs: int) -> Section:
    title = "Container image (--oci-image)"
    if not frozen_available():
        return Section(title, [f"`docker build` side: {NOT_BUILT} (no {FROZEN.name})."])
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        return Section(title, [f"No Docker engine answers ({str(exc)[:200]}); not measured."])
    _, base = base_image("bookworm", "amd64", ws.tmp / "oci-base")
    sh("skopeo", "copy", "-q", f"oci-archive:{base}:base", f"docker-daemon:{BASE_TAG}")
    context = ws.tmp / "docker-context"
    context.mkdir()
    shutil.copy2(FROZEN, context / "envunpack")
    shutil.copy2(ws.archive, context / "env.tar")
    (context / "Dockerfile").write_text(DOCKERFILE)
    image = ws.tmp / "app.oci.tar"
    ours: list[str | Path] = [BIN / "envpack", ws.project, "--oci-image", "--base", base]
    ours += ["-o", image]
    ours += ["--cache", ws.cache, "-q", "--force"]

    def docker_build() -> None:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(DOCKER_TAG, force=True)
        client.images.build(
            path=str(context), tag=DOCKER_TAG, network_mode="none", nocache=True, rm=True
        )

    contestants = [
        Contestant("envpack --oci-image (warm cache)", lambda: sh(*ours)),
        Contestant("docker build (envunpack in stage 1)", docker_build),
    ]
    say(f"image: 2 x {runs} builds")
    times = race(contestants, runs)
    sh("skopeo", "copy", "-q", f"oci-archive:{image}:latest", f"docker-daemon:{OURS_TAG}")
    sizes = {tag: int(client.images.get(tag).attrs["Size"]) for tag in (OURS_TAG, DOCKER_TAG)}
    base_size = int(client.images.get(BASE_TAG).attrs["Size"])
    probe = "import ssl, sqlite3; print('ok')"
    for tag in (OURS_TAG, DOCKER_TAG):
        out = client.containers.run(tag, ["python", "-c", probe], network_mode="none", remove=True)
        assert out == b"ok\n", (tag, out)
    layers = len(client.images.get(OURS_TAG).attrs["RootFS"]["Layers"])
    sharing = measure_sharing(ours, image, base, ws.tmp)
    for tag in (OURS_TAG, DOCKER_TAG, BASE_TAG):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, force=True)
    client.images.prune(filters={"dangling": True, "label": LABEL})
    build_ratio = ratio(times, contestants[0].name, contestants[1].name)
    rows = [[c.name, secs(median(times, c.name))] for c in contestants]
    mb = 1e6
    lines = [
        f"`envpack --oci-image` takes {build_ratio:.2f}x `docker build` of the same env "
        "(median of per-round ratios; docker starts from the packed archive).",
        f"Image sizes in the engine: envpack {sizes[OURS_TAG] / mb:.1f} MB ({layers} layers), "
        f"docker build {sizes[DOCKER_TAG] / mb:.1f} MB; the base alone {base_size / mb:.1f} MB. "
        f"The OCI archive file: {image.stat().st_size / mb:.1f} MB.",
        *sharing.lines,
        "",
        *table(["build", "median"], rows),
    ]
    figures: dict[str, float | None] = {
        "image_build_vs_docker_build": build_ratio,
        "image_size_mb": sizes[OURS_TAG] / mb,
        "docker_build_size_mb": sizes[DOCKER_TAG] / mb,
        "image_layers": float(layers),
        **sharing.figures,
    }
    return Section(title, lines, figures)
