"""The `--json` documents of both command lines, built in one place so they share a schema.

Every document has `command`, `platform`, `environment` (null for pixi-pack archives),
`artifacts` (always a list of the manifest's artifact objects) and `total_size`; each
command adds its own keys. docs/json.md describes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from envpack.core.manifest import artifact_to_json
from envpack.core.models import Artifact


def document(
    command: str,
    *,
    platform: str | None,
    environment: str | None,
    artifacts: Iterable[Artifact] | Iterable[Mapping[str, Any]],
    **extra: object,
) -> str:
    rows = [artifact_to_json(a) if isinstance(a, Artifact) else dict(a) for a in artifacts]
    doc: dict[str, object] = {
        "command": command,
        "platform": platform,
        "environment": environment,
        "artifacts": rows,
        "total_size": sum(int(r.get("size") or 0) for r in rows),
        **extra,
    }
    return json.dumps(doc, indent=2)
