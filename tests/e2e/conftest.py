"""pytest fixtures for drover's end-to-end tests. See drover_harness.py for the machinery."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drover_harness as h  # noqa: E402


def pytest_sessionstart(session):
    missing = [str(p) for p in (h.DROVER, h.HELLO) if not p.exists()]
    if missing:
        raise pytest.UsageError(
            f"missing binaries {missing}: build first (cmake -B build && cmake --build build) "
            f"or point DROVER_BUILD_DIR at a build directory")


@pytest.fixture
def tmp():
    """A short private directory (unix socket paths must stay under 108 bytes); removed after
    the test unless DROVER_KEEP_TMP is set."""
    path = Path(tempfile.mkdtemp(prefix="drover-e2e-"))
    yield path
    if not os.environ.get("DROVER_KEEP_TMP"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def drover_factory(tmp, request):
    """Makes Drover instances rooted in their own subdirectory; all are stopped at teardown."""
    made = []

    def make():
        d = tmp / f"d{len(made)}"
        d.mkdir()
        dr = h.Drover(d)
        made.append(dr)
        return dr

    request.node._drovers = made
    yield make
    for dr in made:
        dr.stop()
    # A sanitizer build reports memory errors, leaks and undefined behaviour on stderr (drover's,
    # or a worker's, which drover turns into log records): any such report fails the test.
    for dr in made:
        report = dr.sanitizer_report() if dr.proc is not None else None
        if report:
            pytest.fail(f"sanitizer report from drover or a worker:\n{report}", pytrace=False)


@pytest.fixture
def drover(drover_factory):
    """One drover under test (not started yet: call .start(...))."""
    return drover_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for i, dr in enumerate(getattr(item, "_drovers", [])):
            if dr.proc is not None:
                report.sections.append((f"drover {i} output", dr.output()))
