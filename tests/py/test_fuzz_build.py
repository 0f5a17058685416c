"""Fuzz test in `make test`: 100 seeded mutants of sample files (bytes flipped,
truncated, blocks zeroed, extreme finite values), each built alone with a time
limit: 0 crashes (signal, exit 70), 0 hangs, 0 non-finite vectors, every
refusal naming the file. The generator is tests/py/fuzz_mutants.py;
bench/fuzz_build.py runs thousands of the same mutants.
Run: test_fuzz_build.py --bin BUILD --samples DIR --tmp DIR [--seed S --count N]
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz_mutants  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--count", type=int, default=100)
    a = ap.parse_args()
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    scratch = fuzz_mutants.scratch_dir(a.tmp)
    try:
        results = fuzz_mutants.run_mutants(os.path.join(a.bin, "mmu-index"), a.samples, scratch, a.seed, 0, a.count)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    passed = failed = 0
    kinds = {}
    for i, what, verdict, detail, _ in results:
        kinds.setdefault(verdict, 0)
        kinds[verdict] += 1
        if verdict in ("built", "refused"):
            passed += 1
        else:
            failed += 1
            print("FAIL mutant %d (seed %d, %s): %s: %s" % (i, a.seed, what, verdict, detail), flush=True)
    print("verdicts: %s" % ", ".join("%s %d" % kv for kv in sorted(kinds.items())))
    # The fuzz must reach the data, not only the headers: some mutants build.
    if kinds.get("built", 0) == 0 or kinds.get("refused", 0) == 0:
        failed += 1
        print("FAIL the mutants must include both built and refused files")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
