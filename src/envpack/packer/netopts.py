"""The options of envpack's download side (concurrency, config files, mirrors, auth, retries,
timeouts), declared once for typer; packer/netconfig.py and fetch.py give them meaning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=64,
        help="Parallel downloads. [default: the config's concurrency.downloads, else 50]",
        show_default=False,
    ),
]

ConfigOption = Annotated[
    list[Path] | None,
    typer.Option(
        "-c",
        "--config",
        metavar="FILE",
        help="pixi/rattler config.toml (repeatable; mirrors, s3-options, proxy-config, "
        "tls-no-verify), over pixi's global and project config.",
    ),
]

MirrorOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="ORIGINAL=MIRROR",
        help="Fetch ORIGINAL/... from MIRROR/... (repeatable; pixi config mirrors apply too).",
    ),
]

AuthFileOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="rattler credentials JSON (host → token/basic), used instead of "
        "$RATTLER_AUTH_FILE, ~/.netrc and the keyring.",
    ),
]

RetriesOption = Annotated[
    int, typer.Option(min=1, max=20, help="Attempts per download on transient failures.")
]

TimeoutOption = Annotated[
    float, typer.Option(min=0.1, help="Seconds without data before a download is retried.")
]
