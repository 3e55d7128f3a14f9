"""The GPU check's plan fits a lent GPU's budget; its CPU rehearsal runs in CI (.ci/run)."""

import os
import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"
BUDGET_S = 520  # of the 600 s one command may run on the lent machine, start-up and copies aside
STEPS = ("versions", "run-eager", "run-compiled", "memory", "grid", "bench-model", "bench-trans", "bench-loading",
         "bench-epoch", "report")


def test_the_plan_lists_every_step_with_a_limit_and_fits_the_budget(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "GPU_CHECK_PLAN": "1", "OUT": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    limits = dict(re.findall(r"^  (\S+)\s+(\d+) s", proc.stdout, re.M))
    total = int(limits.pop("total"))
    assert tuple(limits) == STEPS
    assert sum(map(int, limits.values())) == total <= BUDGET_S
    assert not list(tmp_path.glob("*.json"))  # the plan alone runs nothing


def test_every_step_runs_under_timeout_with_a_kill_grace():
    text = SCRIPT.read_text()
    assert 'timeout -k "$KILL_AFTER"' in text and "pip install" not in text.split("set -uo pipefail")[1]
    for step in STEPS:
        assert re.search(rf"^step {step}\s", text, re.M), step
