"""One flipped byte, at 100 seeded positions of a real zstd archive: every one is detected.

Each corrupt copy goes through a real `envunpack` run: a non-zero exit, exactly one `error:`
line, and neither the env nor `-o` left behind.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.adversarial.conftest import Packed, one_error_line, record, run

SEED = 20240808
FLIPS = 100


def _corrupt(source: bytes, position: int, rng: random.Random) -> bytes:
    data = bytearray(source)
    data[position] ^= rng.randrange(1, 256)  # never 0: the byte really changes
    return bytes(data)


def _attempt(source: bytes, position: int, mask_seed: int, where: Path) -> tuple[int, str | None]:
    where.mkdir()
    archive = where / "env.tar"
    archive.write_bytes(_corrupt(source, position, random.Random(mask_seed)))
    out = where / "out"
    result = run("envunpack", archive, "-o", out, "-q", timeout=120)
    try:
        line = one_error_line(result)
        assert not (out / "env").exists(), "the env exists after a failed unpack"
        assert not out.exists(), "-o was left behind"
    except AssertionError as exc:
        return position, f"offset {position}: {exc}"
    finally:
        archive.unlink()
    return position, None if line else "no error line"


@pytest.mark.slow
def test_every_flipped_byte_is_detected(packed: Packed, tmp_path: Path) -> None:
    source = packed.zstd.read_bytes()
    rng = random.Random(SEED)
    positions = [rng.randrange(len(source)) for _ in range(FLIPS)]
    masks = [rng.randrange(1 << 30) for _ in range(FLIPS)]
    # Two at a time: the machine has two cores and each run is mostly streaming.
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(
            pool.map(
                lambda i: _attempt(source, positions[i], masks[i], tmp_path / f"flip{i:03d}"),
                range(FLIPS),
            )
        )
    missed = [why for _, why in outcomes if why is not None]
    detected = FLIPS - len(missed)
    for _ in range(detected):
        record("corruptions detected", True)
    for _ in missed:
        record("corruptions detected", False)
    print(f"corruptions detected: {detected}/{FLIPS}")
    assert not missed, "\n".join(missed[:5])
