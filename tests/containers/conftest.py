"""Container test fixtures, and a summary of how many container tests ran on each backend.

A container test that is skipped must say why (pytest's -ra prints the reason), and the
end of the run says how many ran per backend, so CI output shows whether the end-to-end
tests really ran or were all skipped.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import pytest

from tests.containers.harness import (
    BACKEND_ENV,
    BACKENDS,
    BackendUnavailable,
    Target,
    backend_problem,
    get_target,
    resolve_backend,
)

BACKEND_PROPERTY = "container_backend"


def skip_reason(backend: str) -> str | None:
    """Why tests of `backend` cannot run here, or None. Forcing one backend skips the other."""
    forced = os.environ.get(BACKEND_ENV, "auto").strip().lower()
    if forced in BACKENDS and forced != backend:
        return f"{BACKEND_ENV}={forced} excludes the {backend} backend"
    problem = backend_problem(backend)
    return f"{backend} backend unavailable: {problem}" if problem else None


TargetFactory = Callable[[str, str], Target]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each container test runs once per backend; an unusable backend is a skip with a reason."""
    name: str = request.param
    request.node.user_properties.append((BACKEND_PROPERTY, name))
    reason = skip_reason(name)
    if reason:
        pytest.skip(reason)
    return name


@pytest.fixture
def bare_target(request: pytest.FixtureRequest) -> TargetFactory:
    """get_target with the default backend, recorded for the summary and skipped with a reason."""

    def make(suite: str = "bookworm", arch: str = "amd64") -> Target:
        try:
            name = resolve_backend()
        except BackendUnavailable as error:
            request.node.user_properties.append((BACKEND_PROPERTY, "none"))
            pytest.skip(str(error))
        request.node.user_properties.append((BACKEND_PROPERTY, name))
        return get_target(suite, arch, backend=name)

    return make


class ContainerSummary:
    """Counts outcomes of `container`-marked tests per backend, for every test directory."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.container_ids: set[str] = set()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # After deselection (-k, -m), so the total is what this run meant to run.
        self.container_ids = {
            item.nodeid
            for item in session.items
            if item.get_closest_marker("container") is not None
        }

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.container_ids:
            return
        # One outcome per test: a failed setup or call, a skip, or a pass after the call.
        if report.when == "call" or report.outcome != "passed":
            if report.when == "teardown" and report.outcome == "passed":
                return
            self.outcomes[(self._backend(report), report.outcome)] += 1

    @staticmethod
    def _backend(report: pytest.TestReport) -> str:
        for key, value in report.user_properties:
            if key == BACKEND_PROPERTY:
                return str(value)
        # Tests that call get_target() themselves get the default backend.
        try:
            return resolve_backend()
        except BackendUnavailable:
            return "none"

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.container_ids or terminalreporter.config.option.collectonly:
            return
        terminalreporter.section("container tests per backend")
        backends = sorted({backend for backend, _ in self.outcomes})
        for name in backends:
            counts = ", ".join(
                f"{self.outcomes[(name, outcome)]} {outcome}"
                for outcome in ("passed", "failed", "skipped")
                if self.outcomes[(name, outcome)]
            )
            terminalreporter.write_line(f"{name}: {counts}")
        ran = sum(n for (_, outcome), n in self.outcomes.items() if outcome != "skipped")
        terminalreporter.write_line(
            f"{ran} of {len(self.container_ids)} collected container tests ran "
            f"({BACKEND_ENV}={os.environ.get(BACKEND_ENV, 'auto')})"
        )


def pytest_configure(config: pytest.Config) -> None:
    # Registered as a plugin rather than as conftest hooks, so that container tests in
    # other directories (the end-to-end tests) are counted too.
    if not config.pluginmanager.has_plugin("envpack-container-summary"):
        config.pluginmanager.register(ContainerSummary(), "envpack-container-summary")
