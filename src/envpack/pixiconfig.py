"""pixi-pack's `-c/--config`: a rattler/pixi `config.toml`, read by rattler itself.

Of what such a file can say, packing uses the mirrors and the download concurrency; every
other setting is named in one warning, so nobody believes it took effect when it did not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import rattler

from envpack.errors import EnvpackError


@dataclass(frozen=True)
class ConfigSettings:
    mirrors: dict[str, str]
    concurrency: int | None  # None: the file does not set it
    warnings: tuple[str, ...]


def load_config(path: Path) -> ConfigSettings:
    try:
        text = path.read_text()
    except OSError as exc:
        raise EnvpackError(f"cannot read --config {path}: {exc.strerror}") from None
    try:
        config, unknown = rattler.Config.from_toml_with_unused_keys(text)
    except Exception as exc:  # noqa: BLE001 - rattler raises ValueError or its own types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EnvpackError(f"--config {path} is not a valid pixi/rattler config: {first}") from None
    default = rattler.Config.from_toml("").concurrency_downloads
    concurrency = config.concurrency_downloads
    warnings = []
    ignored = sorted(set(unknown))
    if config.s3_options:
        buckets = ", ".join(sorted(config.s3_options))
        ignored.append(f"s3-options ({buckets}: envpack downloads http, https and file URLs)")
    if ignored:
        warnings.append(f"--config {path}: ignoring {'; '.join(ignored)}")
    return ConfigSettings(
        mirrors={url: targets[0] for url, targets in config.mirrors.items() if targets},
        concurrency=concurrency if concurrency != default else None,
        warnings=tuple(warnings),
    )
