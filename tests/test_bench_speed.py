"""``scripts/bench_speed.py`` still runs (a smoke test on tiny images; the figures are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_stages_runs_every_step_and_writes_json(tmp_path):
    out = tmp_path / "stages.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_speed.py"), "stages", "--n", "2", "--rows", "96", "--cols", "112",
         "--json", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"] == "stages" and len(result["ms_per_file"]) == 11
    assert not any(arg.startswith("/") for arg in result["command"].split())  # paths relative to the repository
