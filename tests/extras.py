"""Optional extras (``deploy``, later ``label``): skip where they are missing, fail where required.

A test module of an optional extra starts with::

    from tests.extras import require_extra

    pytestmark = pytest.mark.extra("deploy")
    sdk = require_extra("deploy", "monai.deploy", reason="...")

In the main environment the extra is absent and the module is skipped, as with
``pytest.importorskip``. A CI job built to test an extra sets ``PRICHEXY_REQUIRE_EXTRAS``
(comma-separated names, e.g. ``deploy,label``): there a missing module fails the collection,
and any test marked ``extra(<name>)`` that skips -- for whatever reason -- is reported as
failed, so that the job cannot pass by testing nothing.

This module is a pytest plugin (its hooks are imported by ``tests/conftest.py``); it imports
neither torch nor the package, so it can be loaded alone (``-p tests.extras``).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

__all__ = ["ENV", "required_extras", "require_extra", "pytest_configure", "pytest_runtest_makereport"]

ENV = "PRICHEXY_REQUIRE_EXTRAS"


def required_extras() -> set[str]:
    """The extras this run must test (``PRICHEXY_REQUIRE_EXTRAS``, comma-separated)."""
    return {name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()}


def require_extra(name: str, module: str, reason: str | None = None) -> ModuleType:
    """Import ``module`` of the optional extra ``name``; skip the calling module when it is
    missing, or fail when ``PRICHEXY_REQUIRE_EXTRAS`` names ``name``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        why = reason or f"optional extra {name!r} not installed"
        if name in required_extras():
            pytest.fail(f"{why} ({module}: {err}), but {ENV} requires the {name!r} extra in this run", pytrace=False)
        pytest.skip(f"{why} ({module}: {err})", allow_module_level=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"extra(name): a test of an optional extra; a skip fails when {ENV} names it")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    marker = item.get_closest_marker("extra")
    if marker is None or not marker.args or marker.args[0] not in required_extras():
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped although {ENV} requires the {marker.args[0]!r} extra: {reason}"
