"""The optional-extra mechanism (tests/extras.py): skip where an extra is missing, fail where the
run requires it -- a missing module at collection, and any skipped test marked ``extra(name)``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extras import ENV, require_extra, required_extras

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_require_extra_imports_skips_or_fails(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert require_extra("any", "json") is json
    with pytest.raises(pytest.skip.Exception, match="optional extra 'demo' not installed"):
        require_extra("demo", "no_such_module_for_prichexy_tests")
    monkeypatch.setenv(ENV, " label , demo ")
    assert required_extras() == {"label", "demo"}
    try:  # a skip here must not pass for a skip of this test: caught and turned into a failure
        require_extra("demo", "no_such_module_for_prichexy_tests", reason="demo SDK missing")
    except pytest.skip.Exception as err:
        pytest.fail(f"require_extra skipped although {ENV} requires the extra: {err}")
    except pytest.fail.Exception as err:
        assert f"demo SDK missing (no_such_module_for_prichexy_tests" in str(err)
        assert f"{ENV} requires the 'demo' extra" in str(err)
    else:
        pytest.fail("require_extra returned for a missing module")
    with pytest.raises(pytest.skip.Exception):  # another extra, not required here
        require_extra("deploy", "no_such_module_for_prichexy_tests")


def _pytest(tmp_path: Path, source: str, required: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_generated.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    if required is not None:
        env[ENV] = required
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "tests.extras", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), str(tmp_path / "test_generated.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


SKIPPING_TEST = '''
import pytest
pytestmark = pytest.mark.extra("demo")

def test_needs_a_device():
    pytest.skip("no device here")

def test_runs():
    pass
'''

MISSING_MODULE = '''
import pytest
from tests.extras import require_extra
require_extra("demo", "no_such_module_for_prichexy_tests")

def test_never_collected():
    pass
'''


def test_a_skip_fails_only_where_the_extra_is_required(tmp_path):
    free = _pytest(tmp_path, SKIPPING_TEST, None)
    assert free.returncode == 0 and "1 passed, 1 skipped" in free.stdout, free.stdout
    other = _pytest(tmp_path, SKIPPING_TEST, "label")
    assert other.returncode == 0 and "1 skipped" in other.stdout, other.stdout
    required = _pytest(tmp_path, SKIPPING_TEST, "label,demo")
    assert required.returncode == 1, required.stdout
    assert "1 failed, 1 passed" in required.stdout
    assert f"skipped although {ENV} requires the 'demo' extra: Skipped: no device here" in required.stdout


def test_a_missing_extra_fails_the_collection_where_required(tmp_path):
    free = _pytest(tmp_path, MISSING_MODULE, None)
    assert free.returncode == 5 or "1 skipped" in free.stdout, free.stdout  # whole module skipped
    assert "no_such_module_for_prichexy_tests" in free.stdout
    required = _pytest(tmp_path, MISSING_MODULE, "demo")
    assert required.returncode not in (0, 5), required.stdout
    assert "1 error" in required.stdout and f"{ENV} requires the 'demo' extra" in required.stdout


def test_ci_runs_each_extras_module_with_the_extra_required():
    """`.ci/run` runs each optional extra's test module with PRICHEXY_REQUIRE_EXTRAS naming that extra,
    so a missing SDK fails its job instead of skipping it (issue 16)."""
    import re
    from pathlib import Path

    script = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    commands = script.replace("\\\n", " ").splitlines()
    for extra, module in (("deploy", "tests/test_deploy.py"), ("label", "tests/test_label_server.py")):
        runs = [line for line in commands if "pytest" in line and module in line]
        assert runs, f".ci/run never runs {module}"
        for line in runs:
            required = re.search(r"PRICHEXY_REQUIRE_EXTRAS=(\S+)", line)
            assert required and extra in required.group(1).split(","), f".ci/run runs {module} without requiring {extra!r}"


def test_the_suites_conftest_installs_the_extras_hooks():
    """Without these two hooks in tests/conftest.py a required extra's skips would pass silently (issue 16)."""
    import tests.conftest as conftest
    import tests.extras as extras

    assert conftest.pytest_configure is extras.pytest_configure
    assert conftest.pytest_runtest_makereport is extras.pytest_runtest_makereport
