#!/usr/bin/env bash
# Mutation testing of the pure-logic core with mutmut (one process; not part of the default
# test run). Usage, from anywhere:  bash tests/mutation/run.sh
# Mutates the modules and functions listed in tests/mutation/score.py (SCOPE), runs the unit
# tests of tests/mutation/ (and tests/test_masks.py) against each mutant (config: [tool.mutmut] in pyproject.toml),
# prints the score per module and exits 1 when one is below 80 %. Takes ~30-60 min on 2 cores.
# Keeps ./mutants (git-ignored) for `.venv/bin/mutmut results` / `mutmut show NAME`; set
# MUTMUT_KEEP=1 to reuse its results and only rerun what changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python -c "import mutmut" 2>/dev/null || .venv/bin/pip install -q -c constraints.txt "mutmut>=3.8,<4"  # = the "mutation" extra
# one thread; no entry-point pytest plugins (pytest-xvfb would start an X server per mutant)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
[ "${MUTMUT_KEEP:-0}" = 1 ] || rm -rf mutants
mapfile -t scope < <(.venv/bin/python tests/mutation/score.py --patterns)
.venv/bin/mutmut run --max-children 1 "${scope[@]}" | tr '\r' '\n' | grep -v '^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]' || true
.venv/bin/python tests/mutation/score.py
