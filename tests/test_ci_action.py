"""The GitHub Action's pack step (scripts/action-pack), run here as the action would run it.

GitHub Actions cannot run on our machines, so the step's shell logic lives in a script that
action.yml calls with its inputs in the environment. These tests call it the same way against
the fixture channel, read the step outputs back from a GITHUB_OUTPUT file, and check them
against the archives themselves. The static checks at the end keep action.yml and the
workflows honest where actionlint cannot look (pins and permissions).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.clirun import BIN, run_cli
from tests.conftest import REPO_ROOT

ACTION_PACK = REPO_ROOT / "scripts" / "action-pack"
ACTION_YML = REPO_ROOT / "action.yml"
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def run_action_pack(
    tmp_path: Path, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the step with ENVPACK_* inputs; returns the process and the parsed GITHUB_OUTPUT."""
    github_output = tmp_path / "github_output"
    github_output.touch()
    env = {
        **os.environ,
        "ENVPACK": str(BIN / "envpack"),
        "GITHUB_OUTPUT": str(github_output),
        # envpack's download cache follows XDG_CACHE_HOME; keep each test's to itself.
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        **{f"ENVPACK_{name.upper()}": value for name, value in inputs.items()},
    }
    env.pop("GITHUB_ACTIONS", None)
    work = tmp_path / "workspace"
    work.mkdir(exist_ok=True)
    proc = subprocess.run(
        [str(ACTION_PACK)], env=env, cwd=work, capture_output=True, text=True, check=False
    )
    return proc, parse_github_output(github_output.read_text())


def parse_github_output(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT's two forms: `name=value` and `name<<DELIM` ... `DELIM`."""
    outputs: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value: list[str] = []
            for body in lines:
                if body == delimiter:
                    break
                value.append(body)
            else:
                raise AssertionError(f"output {name} never closed by {delimiter}")
            outputs[name] = "\n".join(value)
        elif line:
            name, value_text = line.split("=", 1)
            outputs[name] = value_text
    return outputs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_packs_two_platforms_and_reports_paths_and_hashes(
    fixture_project: Path, tmp_path: Path
) -> None:
    proc, outputs = run_action_pack(
        tmp_path,
        manifest_path=str(fixture_project),
        platforms="linux-64, linux-aarch64",
        output="out/env-{platform}.tar",
    )
    assert proc.returncode == 0, proc.stderr

    archives = json.loads(outputs["archives"])
    hashes = json.loads(outputs["sha256"])
    assert sorted(archives) == sorted(hashes) == ["linux-64", "linux-aarch64"]
    listed: list[str] = []
    for platform, path_text in archives.items():
        archive = Path(path_text)
        assert archive == tmp_path / "workspace" / "out" / f"env-{platform}.tar"
        assert archive.is_file()
        assert hashes[platform] == sha256_of(archive)
        # The sidecar checks with the standard tool, from the archive's own directory.
        sidecar = archive.with_name(archive.name + ".sha256")
        check = subprocess.run(
            ["sha256sum", "-c", sidecar.name], cwd=archive.parent, capture_output=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        listed += [str(archive), str(sidecar)]
        # The unpacker reads each archive and sees the platform it was packed for.
        result = run_cli("envunpack", "--list", "--json", archive)
        assert result.returncode == 0, result.stderr.decode()
        manifest = json.loads(result.stdout)
        assert manifest["platform"] == platform
        assert manifest["environment"] == "default"
    assert outputs["paths"].splitlines() == listed


def test_directory_output_and_plain_tar(fixture_project: Path, tmp_path: Path) -> None:
    """A directory output gets <environment>-<platform>.tar; compression none is a plain tar."""
    proc, outputs = run_action_pack(
        tmp_path,
        manifest_path=str(fixture_project),
        platforms="linux-aarch64",
        output="dist/",
        compression="none",
    )
    assert proc.returncode == 0, proc.stderr
    archive = Path(json.loads(outputs["archives"])["linux-aarch64"])
    assert archive == tmp_path / "workspace" / "dist" / "default-linux-aarch64.tar"
    assert not archive.read_bytes()[:4].startswith(ZSTD_MAGIC)
    with tarfile.open(archive) as tar:
        assert tar.getnames()[0] == "envpack.json"
    assert json.loads(outputs["sha256"]) == {"linux-aarch64": sha256_of(archive)}


def test_create_executable_is_passed_through_or_fails_clearly(
    fixture_project: Path, tmp_path: Path
) -> None:
    help_text = run_cli("envpack", "--help").stdout.decode()
    proc, outputs = run_action_pack(
        tmp_path,
        manifest_path=str(fixture_project),
        platforms="linux-64",
        output="out/env-{platform}",
        create_executable="true",
        # scripts/test builds the static unpacker into dist/ before pytest.
        unpacker_dir=str(Path(__file__).resolve().parents[1] / "dist"),
    )
    if "--create-executable" in help_text:
        assert proc.returncode == 0, proc.stderr
        executable = Path(json.loads(outputs["archives"])["linux-64"])
        assert json.loads(outputs["sha256"])["linux-64"] == sha256_of(executable)
    else:
        # Not built yet in this envpack: one clear line, and no outputs that look like success.
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: create-executable"), proc.stderr
        assert "--create-executable" in last
        assert outputs == {}
        assert not (tmp_path / "workspace" / "out").exists()


def test_entrypoint_makes_a_one_file_app_that_runs(fixture_project: Path, tmp_path: Path) -> None:
    proc, outputs = run_action_pack(
        tmp_path,
        manifest_path=str(fixture_project),
        platforms="linux-64",
        output="out/hello-{platform}.run",
        entrypoint="hello-c",
        # scripts/test builds the static unpacker and the launcher into dist/ before pytest.
        unpacker_dir=str(Path(__file__).resolve().parents[1] / "dist"),
    )
    assert proc.returncode == 0, proc.stderr
    app = Path(json.loads(outputs["archives"])["linux-64"])
    assert json.loads(outputs["sha256"])["linux-64"] == sha256_of(app)
    # First run installs, then execs the entrypoint: the env's own greeting comes out.
    ran = subprocess.run(
        [str(app)],
        env={"PATH": "/usr/bin:/bin", "ENVPACK_APP_HOME": str(tmp_path / "apps")},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    greeting = next((tmp_path / "apps").glob("*/env/share/libhello/greeting.txt"))
    env = greeting.parents[2]
    assert ran.stdout.splitlines() == [
        greeting.read_text().strip(),
        f"hello-c prefix: {env}",
        f"libhello prefix: {env}",
    ]


def test_unknown_entrypoint_is_envpacks_one_line_and_no_outputs(
    fixture_project: Path, tmp_path: Path
) -> None:
    proc, outputs = run_action_pack(
        tmp_path,
        manifest_path=str(fixture_project),
        platforms="linux-64",
        entrypoint="no-such-command",
        unpacker_dir=str(Path(__file__).resolve().parents[1] / "dist"),
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --entrypoint no-such-command"), proc.stderr
    assert outputs == {}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"platforms": "linux-64 linux-aarch64", "output": "env.tar"}, "put {platform} in it"),
        ({"compression": "xz"}, "compression must be zstd or none"),
        ({"create_executable": "maybe"}, "create-executable must be true or false"),
        ({"entrypoint": "app\nrm -rf /"}, "entrypoint must be one line"),
        ({"platforms": "linux-64;rm"}, "is not a platform"),
        ({"environment": "../x"}, "environment name"),
    ],
)
def test_bad_inputs_fail_before_packing(
    tmp_path: Path, inputs: dict[str, str], message: str
) -> None:
    proc, outputs = run_action_pack(tmp_path, manifest_path=str(tmp_path / "nowhere"), **inputs)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr
    assert outputs == {}


# --- static checks of action.yml and the workflows -------------------------------------

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$", re.MULTILINE)


def all_uses() -> list[tuple[str, str, str]]:
    found = []
    for path in [ACTION_YML, *WORKFLOWS]:
        for match in USES.finditer(path.read_text()):
            found.append((path.name, match["ref"], match["rest"]))
    return found


def test_every_remote_action_is_pinned_by_commit_with_its_version() -> None:
    uses = all_uses()
    assert uses, "no uses: found"
    for name, ref, rest in uses:
        if ref.startswith("./"):
            continue  # this repository's own reusable workflow, same commit by definition
        # A tag can be moved to other code; a full commit SHA cannot.
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{name}: {ref} not pinned"
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", rest), f"{name}: {ref} lacks '# vX.Y.Z'"


def test_same_action_same_pin_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for _, ref, rest in all_uses():
        if not ref.startswith("./"):
            action, sha = ref.split("@")
            pins.setdefault(action, set()).add(f"{sha}{rest}")
    assert {action: sha for action, sha in pins.items() if len(sha) > 1} == {}


def test_workflows_start_from_read_only_permissions() -> None:
    assert WORKFLOWS, "no workflows found"
    for path in WORKFLOWS:
        text = path.read_text()
        assert re.search(r"^permissions:\n  contents: read\n(?!  )", text, re.MULTILINE), (
            f"{path.name}: top-level permissions must be exactly contents: read"
        )
        assert "secrets." not in text.replace("secrets.GITHUB_TOKEN", ""), (
            f"{path.name}: no stored secrets; PyPI uses trusted publishing"
        )


def test_action_maps_every_input_onto_the_script() -> None:
    """Every input reaches scripts/action-pack through env, never spliced into shell text."""
    text = ACTION_YML.read_text()
    inputs_block = text.split("\ninputs:\n", 1)[1].split("\noutputs:\n", 1)[0]
    inputs = re.findall(r"^  ([a-z][a-z0-9-]*):$", inputs_block, re.MULTILINE)
    assert {"manifest-path", "environment", "platform", "output", "create-executable"} <= set(
        inputs
    )
    assert "compression" in inputs
    script = ACTION_PACK.read_text()
    for run_block in re.findall(r"run: \|\n((?:        .*\n|\n)+)", text):
        assert "${{" not in run_block, f"expression inside a run: script:\n{run_block}"
    for name, variable in [
        ("manifest-path", "ENVPACK_MANIFEST_PATH"),
        ("environment", "ENVPACK_ENVIRONMENT"),
        ("platform", "ENVPACK_PLATFORMS"),
        ("output", "ENVPACK_OUTPUT"),
        ("create-executable", "ENVPACK_CREATE_EXECUTABLE"),
        ("compression", "ENVPACK_COMPRESSION"),
    ]:
        assert f"{variable}: ${{{{ inputs.{name} }}}}" in text, f"{name} not mapped to {variable}"
        assert variable in script
    for output in ("archives", "sha256", "paths"):
        assert f"${{{{ steps.pack.outputs.{output} }}}}" in text
