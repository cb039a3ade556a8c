"""envpack.pixiconfig: pixi-pack's --config file, read with rattler.Config."""

from __future__ import annotations

from pathlib import Path

import pytest

from envpack.errors import EnvpackError
from envpack.pixiconfig import load_config


def test_mirrors_and_concurrency(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[mirrors]\n"https://conda.anaconda.org/conda-forge" = '
        '["https://my.artifactory/conda-forge", "https://second/"]\n\n'
        "[concurrency]\ndownloads = 5\n"
    )
    settings = load_config(path)
    assert settings.mirrors == {
        "https://conda.anaconda.org/conda-forge": "https://my.artifactory/conda-forge"
    }
    assert settings.concurrency == 5
    assert settings.warnings == ()


def test_unset_concurrency_is_none(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    assert load_config(path).concurrency is None


def test_s3_and_unknown_keys_are_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[s3-options.bucket-a]\nendpoint-url = "https://s3.example"\nregion = "r"\n'
        "force-path-style = false\n"
    )
    settings = load_config(path)
    assert len(settings.warnings) == 1
    assert "bucket-a" in settings.warnings[0] and "force-path-style" in settings.warnings[0]


@pytest.mark.parametrize("content", [None, "[[[", "[mirrors]\nx = 3\n"])
def test_bad_config_is_one_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "config.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EnvpackError, match="--config"):
        load_config(path)
