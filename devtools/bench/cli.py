"""`scripts/bench pack|unpack|unpacker|selfextract|app|image|registry|all`: sections run."""

from __future__ import annotations

import argparse
import compileall
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import devtools.bench
from devtools.bench import baseline
from devtools.bench.app import bench_app
from devtools.bench.common import BENCH_VENV, DOCS, ROOT, say
from devtools.bench.image import bench_image
from devtools.bench.measure import sh
from devtools.bench.pack import bench_pack, bench_sizes
from devtools.bench.registry import bench_registry
from devtools.bench.report import render, render_svg
from devtools.bench.selfextract import bench_selfextract
from devtools.bench.smallenvs import bench_small
from devtools.bench.tables import Section
from devtools.bench.unpack import bench_peaks, bench_unpack
from devtools.bench.unpacker import bench_unpacker
from devtools.bench.workspace import workspace


def attempt(title: str, fn: Callable[[], Section]) -> Section:
    """One section's failure is reported in its place; the others still make the report."""
    try:
        return fn()
    except Exception as exc:  # a benchmark run is long: keep what was measured
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Section(title, [f"**Failed:** `{first[:300]}`"])


def ensure_bench_venv() -> None:
    """conda-pack lives in its own venv under the dev cache, never in the project's."""
    if (BENCH_VENV / "bin" / "conda-pack").is_file():
        return
    say(f"creating {BENCH_VENV} with conda-pack")
    sh("/usr/bin/python3", "-m", "venv", BENCH_VENV)
    sh(
        BENCH_VENV / "bin" / "pip",
        "install",
        "-q",
        "conda-pack",
        "zstandard",
        "py-spy",
        "pyinstrument",
    )


def compile_sources() -> None:
    """Byte-compile envpack's sources, as installing its wheel does: with
    PYTHONDONTWRITEBYTECODE set (as on the dev machine) a source checkout would be compiled
    anew by every envunpack run, ~45 ms that no installed envunpack pays."""
    compileall.compile_dir(ROOT / "src", quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_rattler-install"]:
        return baseline.main(args_list[1:])
    parser = argparse.ArgumentParser(
        description=devtools.bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what",
        choices=[
            *("pack", "unpack", "small", "unpacker", "selfextract", "app", "image", "registry"),
            "all",
        ],
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--env", choices=["bench", "fixture", "tiny"], default="bench")
    parser.add_argument("--output", type=Path, default=DOCS / "benchmarks.md", help="for `all`")
    args = parser.parse_args(args_list)
    if args.what == "unpacker":
        print(render([bench_unpacker(args.runs)], None, args.runs))
        return 0
    ensure_bench_venv()
    compile_sources()
    if args.what == "small":  # builds its own two small workspaces
        with tempfile.TemporaryDirectory(prefix="envpack-bench-") as tmp_name:
            print(render([bench_small(Path(tmp_name), args.runs)], None, args.runs))
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="envpack-bench-") as tmp_name,
        workspace(args.env, Path(tmp_name)) as ws,
    ):
        chosen: list[tuple[str, Callable[[], Section]]] = []
        if args.what in ("unpack", "all"):
            chosen += [
                ("Unpack", lambda: bench_unpack(ws, args.runs)),
                ("Peak memory and disk during unpack", lambda: bench_peaks(ws, args.runs)),
            ]
        if args.what == "all":
            chosen.append(("Unpack, small envs", lambda: bench_small(ws.tmp / "small", args.runs)))
        if args.what in ("pack", "all"):
            chosen += [
                ("Pack", lambda: bench_pack(ws, args.runs)),
                ("Archive size", lambda: bench_sizes(ws)),
            ]
        if args.what == "all":
            chosen.append(("The frozen unpacker", lambda: bench_unpacker(args.runs)))
        if args.what in ("selfextract", "all"):
            chosen.append(("Self-extracting executable", lambda: bench_selfextract(ws, args.runs)))
        if args.what in ("app", "all"):
            chosen.append(("App file (--entrypoint)", lambda: bench_app(ws, args.runs)))
        if args.what in ("image", "all"):
            chosen.append(("Container image (--oci-image)", lambda: bench_image(ws, args.runs)))
        if args.what in ("registry", "all"):
            chosen.append(("Through a registry (oci://)", lambda: bench_registry(ws, args.runs)))
        sections = [attempt(title, fn) for title, fn in chosen]
        report = render(sections, ws, args.runs)
    print(report)
    if args.what == "all":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
        svg = render_svg(sections)
        if svg is not None:
            args.output.with_suffix(".svg").write_text(svg, encoding="utf-8")
        say(f"wrote {args.output}")
    return 0
