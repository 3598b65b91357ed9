"""Mutation score per module from mutmut's results in ./mutants (run by tests/mutation/run.sh).

``python tests/mutation/score.py --patterns`` prints the mutant-name patterns of the scope (what
run.sh passes to ``mutmut run``); without arguments it prints the score table and exits 1 when a
module is below :data:`THRESHOLD`. Killed, timed-out and crashed mutants count as detected;
survivors, mutants no test reaches and "suspicious" ones count against the score.
"""
from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

THRESHOLD = 0.80

#: module -> mutant-name patterns (mutmut names a function's mutants ``module.x_func__mutmut_N``
#: and a method's ``module.xǁClassǁmethod__mutmut_N``). results.py: the mask/RLE helpers and the
#: JSON contract, not the overlay drawing; vocabulary.py: the list/file/text parser, not the
#: classifier cache.
SCOPE = {
    "ovsam_core/geometry.py": ["ovsam_core.geometry.*"],
    "ovsam_core/prompts.py": ["ovsam_core.prompts.*"],
    "ovsam_core/preprocess.py": ["ovsam_core.preprocess.*"],
    "ovsam_core/masks.py": ["ovsam_core.masks.*"],
    "ovsam_core/results.py (mask/RLE + JSON)": [
        f"ovsam_core.results.x_{f}__mutmut_*"
        for f in ("mask_to_rle", "rle_to_mask", "_num", "object_to_json", "prediction_to_json")],
    "ovsam_core/vocabulary.py (parser)": [
        f"ovsam_core.vocabulary.x_{f}__mutmut_*"
        for f in ("_normalise", "vocabulary_from_list", "_parse_structured", "vocabulary_from_file",
                  "load_vocabulary", "is_preset", "looks_like_path", "parse_vocabulary_text",
                  "vocabulary_to_text")],
}
DETECTED = {1, 3, 36, 37, -24, 24, 152, 255, -11, -9}  # killed, timeout, caught, crashed
NOT_RUN = {None, 2, 34}  # not checked, interrupted, skipped


def main(argv: list[str]) -> int:
    if argv[1:] == ["--patterns"]:
        print("\n".join(p for ps in SCOPE.values() for p in ps))
        return 0
    results = {}
    for meta in Path("mutants/ovsam_core").glob("*.py.meta"):
        results.update(json.loads(meta.read_text())["exit_code_by_key"])
    ok = True
    print(f"{'module':45s} {'mutants':>7s} {'killed':>6s} {'survived':>8s} {'not run':>7s} {'score':>6s}")
    for module, patterns in SCOPE.items():
        codes = {k: v for k, v in results.items() if any(fnmatch.fnmatch(k, p) for p in patterns)}
        if not codes:
            if Path(module.split()[0]).exists():
                print(f"{module:45s} no mutants: run bash tests/mutation/run.sh first")
                ok = False
            continue
        c = Counter("killed" if v in DETECTED else "not run" if v in NOT_RUN else "survived" for v in codes.values())
        judged = c["killed"] + c["survived"]
        score = c["killed"] / judged if judged else 0.0
        ok &= score >= THRESHOLD and not c["not run"]
        print(f"{module:45s} {len(codes):7d} {c['killed']:6d} {c['survived']:8d} {c['not run']:7d} {score:6.1%}")
    survivors = sorted(k for k, v in results.items() if v not in DETECTED | NOT_RUN
                       and any(fnmatch.fnmatch(k, p) for ps in SCOPE.values() for p in ps))
    if survivors:
        print(f"\nsurvivors ({len(survivors)}; `.venv/bin/mutmut show NAME` prints the change):")
        print("\n".join(f"  {s}" for s in survivors))
    print(f"\n{'PASS' if ok else 'FAIL'}: every module >= {THRESHOLD:.0%}" + ("" if ok else " (or not run)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
