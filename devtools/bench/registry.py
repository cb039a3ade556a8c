"""The env through a real registry: what an update pulls and a second push sends (also to a
new repository with --mount-from), from the registry's own access log, and a full pull's
wall time against `skopeo copy`.

v1 is the bench env; v2 is v1 plus one package (`--inject` of the tiny wheel, the pair the
update test uses). Bytes are the registry's, not envpack's own count: what it served for the
blob and manifest GETs of a step, and the blobs it stored for a push.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from devtools.bench.common import BIN, say
from devtools.bench.measure import Contestant, median, race, ratio, sh
from devtools.bench.tables import Section, mb, secs, table
from devtools.bench.workspace import Workspace
from devtools.registries import PlainRegistry, plain_registry, registry_available
from devtools.wheelbuild import build_wheel

TITLE = "Through a registry (oci://)"
# The goal: an update pulls no more than the changed package's share, plus 2 %.
SLACK = 0.02


def served(registry: PlainRegistry, since: int) -> int:
    """Bytes the registry sent for GETs from log entry `since` on: blobs and manifests."""
    return sum(a.size for a in registry.access(since) if a.method == "GET" and a.status == 200)


def bench_registry(ws: Workspace, runs: int) -> Section:
    if not registry_available():
        return Section(TITLE, ["docker-registry is not installed; not measured."])
    with plain_registry(ws.tmp / "registry", auth=False) as registry:
        return _measure(ws, registry, runs)


def _measure(ws: Workspace, registry: PlainRegistry, runs: int) -> Section:
    wheel = build_wheel(ws.tmp / "registry-wheel")
    repo = f"oci://{registry.host}/bench/env"
    pack: list[str | Path] = [BIN / "envpack", ws.project, "--insecure", "--cache", ws.cache, "-q"]
    unpack: list[str | Path] = [BIN / "envunpack", "--insecure", "-q"]

    def step(*cmd: str | Path) -> int:
        """Runs `cmd`; the access log's length before it, to read what it sent."""
        since = len(registry.access())
        sh(*cmd)
        return since

    say("registry: push v1, push v2 (one package more)")
    mark = step(*pack, "-o", f"{repo}:v1")
    first_push = registry.uploaded_bytes(mark)
    # v2 into a new repository, mounting what v1's holds: the cross-repository path.
    other = f"oci://{registry.host}/bench/env-b"
    mark = step(*pack, "--inject", wheel, "-o", f"{other}:v2", "--mount-from", "bench/env")
    mounted_push, mounted = registry.uploaded_bytes(mark), len(registry.mounts(mark))
    mark = step(*pack, "--inject", wheel, "-o", f"{repo}:v2")
    second_push = registry.uploaded_bytes(mark)
    blobs_sent = len(registry.uploads(mark))

    say("registry: a full v2 pull, then v2 over the v1 cache")
    mark = step(*unpack, f"{repo}:v2", "-o", ws.tmp / "reg-full")
    full_pull, v2_blobs = served(registry, mark), sum(registry.blob_gets(mark).values())
    cache = ws.tmp / "reg-cache"
    step(*unpack, f"{repo}:v1", "-o", ws.tmp / "reg-app", "--cache", cache)
    mark = step(*unpack, f"{repo}:v2", "-o", ws.tmp / "reg-app", "--cache", cache, "--force")
    update_pull = served(registry, mark)
    share = wheel.stat().st_size / v2_blobs
    update_ratio = update_pull / full_pull
    push_ratio = second_push / first_push

    lines = [
        f"v1 is the {ws.kind} env, v2 the same plus one package ({wheel.name}, "
        f"{wheel.stat().st_size:,} B: {share:.4%} of v2's {mb(v2_blobs)} of blobs). Bytes from "
        "docker-registry 2.8's access log on 127.0.0.1.",
        "",
        *table(
            ["step", "bytes", "÷ its full counterpart"],
            [
                ["first push (v1)", f"{first_push:,}", "1"],
                [
                    "second push (v2 after v1)",
                    f"{second_push:,} ({blobs_sent} blobs)",
                    f"{push_ratio:.4%}",
                ],
                [
                    "v2 to a new repository, --mount-from v1's (holds v1 only)",
                    f"{mounted_push:,} ({mounted} blobs mounted)",
                    f"{mounted_push / first_push:.4%}",
                ],
                ["full pull (v2, no cache)", f"{full_pull:,}", "1"],
                ["update pull (v2, v1 cache)", f"{update_pull:,}", f"{update_ratio:.4%}"],
            ],
        ),
        "",
        f"Update pull goal: ≤ the changed package's share + 2 % = {share + SLACK:.2%}; "
        f"measured {update_ratio:.3%}: **{'met' if update_ratio <= share + SLACK else 'missed'}**.",
    ]
    figures: dict[str, float | None] = {
        "registry_update_pull_ratio": update_ratio,
        "registry_update_pull_over_share": update_ratio - share,
        "registry_second_push_ratio": push_ratio,
        "registry_mounted_push_ratio": mounted_push / first_push,
    }
    if shutil.which("skopeo") is not None:
        lines += ["", *_pull_vs_skopeo(ws, f"{repo}:v2", runs, figures)]
    return Section(TITLE, lines, figures)


def _pull_vs_skopeo(
    ws: Workspace, ref: str, runs: int, figures: dict[str, float | None]
) -> list[str]:
    """A full pull, verified, without the install: `envunpack --check` against `skopeo copy`
    into a dir (which checks each blob's digest as well)."""
    into = ws.tmp / "reg-skopeo"

    def clear() -> None:
        shutil.rmtree(into, ignore_errors=True)

    contestants = [
        Contestant(
            "envunpack --check oci://… (full pull)",
            lambda: sh(BIN / "envunpack", "--check", "--insecure", "-q", ref),
        ),
        Contestant(
            "skopeo copy docker://… dir:",
            lambda: sh(
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                "docker://" + ref.removeprefix("oci://"),
                f"dir:{into}",
            ),
            prepare=clear,
        ),
    ]
    say(f"registry: 2 x {runs} full pulls")
    times = race(contestants, runs)
    clear()
    pull_ratio = ratio(times, contestants[0].name, contestants[1].name)
    figures["registry_pull_vs_skopeo"] = pull_ratio
    rows = [[c.name, secs(median(times, c.name))] for c in contestants]
    return [
        f"A full v2 pull, verified, not installed: envunpack takes {pull_ratio:.2f}x "
        "`skopeo copy` (median of per-round ratios).",
        "",
        *table(["pull", "median"], rows),
    ]
