#!/usr/bin/python3
"""Long fuzz run of `mmu-index build` and `inspect` on damaged sample files
(issue 16): the mutants of tests/py/test_fuzz_build.py (same generator,
tests/py/fuzz_mutants.py), thousands of them. Prints the verdicts by mutation
kind, every failure with the line that reproduces it, and the build times.

    /usr/bin/python3 bench/fuzz_build.py --build build [--seed 16] [--first 0] [--count 2000]
                                         [--limit 20] [--workers 2] [--keep] [--json FILE]

Verdicts: built (exit 0, every stored vector finite), refused (exit 1, the
message names the file); failures: crash (a signal, exit 70 or an internal
error, from build or inspect), hang (past --limit seconds), nan (a non-finite
stored vector), unnamed (a refusal that does not name the file).
Exit status 1 when any mutant fails.
"""
import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
import fuzz_mutants  # noqa: E402

FAILURES = ("crash", "hang", "nan", "unnamed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--samples", default=os.path.join(HERE, "..", "data", "samples"))
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=20, help="seconds a build or inspect may take before it counts as a hang")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep every mutant (failed ones are always kept)")
    ap.add_argument("--json")
    a = ap.parse_args()
    index_bin = os.path.join(a.build, "mmu-index")
    scratch = fuzz_mutants.scratch_dir("/tmp")
    t0 = time.monotonic()
    cpu0 = os.times()
    results = fuzz_mutants.run_mutants(index_bin, a.samples, scratch, a.seed, a.first, a.count, a.limit, a.workers,
                                       a.keep)
    wall = time.monotonic() - t0
    cpu1 = os.times()
    by_kind = {}
    failures = []
    for i, what, verdict, detail, _ in results:
        kind = what.split(":")[0]
        by_kind.setdefault(kind, {}).setdefault(verdict, 0)
        by_kind[kind][verdict] += 1
        if verdict in FAILURES:
            failures.append({"index": i, "mutation": what, "verdict": verdict, "detail": detail})
    seconds = sorted(r[4] for r in results)
    totals = {}
    for kinds in by_kind.values():
        for v, n in kinds.items():
            totals[v] = totals.get(v, 0) + n
    print("fuzz: %d mutants (seed %d, %d..%d) of %s in %.0f s wall, %.0f s CPU (children), load %.1f" % (
        len(results), a.seed, a.first, a.first + a.count - 1, ", ".join(fuzz_mutants.BASE_FILES), wall,
        (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system), os.getloadavg()[0]))
    for kind in sorted(by_kind):
        print("  %-9s %s" % (kind, ", ".join("%s %d" % kv for kv in sorted(by_kind[kind].items()))))
    print("  total     %s" % ", ".join("%s %d" % kv for kv in sorted(totals.items())))
    print("  build time: median %.2f s, p99 %.2f s, max %.2f s" % (
        seconds[len(seconds) // 2], seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))], seconds[-1]))
    for f in failures:
        print("FAIL mutant %d (%s): %s: %s\n  reproduce: bench/fuzz_build.py --seed %d --first %d --count 1 --keep" % (
            f["index"], f["mutation"], f["verdict"], f["detail"], a.seed, f["index"]))
    if failures or a.keep:
        print("mutants kept under " + scratch)
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as out:
            json.dump({"seed": a.seed, "first": a.first, "count": a.count, "wall_s": wall, "by_kind": by_kind,
                       "totals": totals, "failures": failures}, out, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
