"""Idle OpenMP threads sleep by default in every executable: libgomp, as it
reports itself through OMP_DISPLAY_ENV, sees OMP_WAIT_POLICY=PASSIVE (spin count
0) when the user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT, and the user's
value of either when set (app_common/process_defaults.cpp). Other variables read
through the executable's getenv keep their values (a store path given by
MMU_STORE reaches mmu-search).
Run: test_omp_wait_policy.py --bin BUILD --tmp DIR
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, binaries_samples_tmp  # noqa: E402

CHECKS = Checks()
check = CHECKS.check


def libgomp_view(exe, **env_set):
    """OMP_WAIT_POLICY and GOMP_SPINCOUNT as libgomp parsed them in exe."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_set, OMP_DISPLAY_ENV="verbose")
    p = subprocess.run([exe, "--help"], capture_output=True, text=True, env=env, timeout=60)
    text = p.stdout + p.stderr
    found = {k: re.search(rf"^\s*{k} = '([^']*)'", text, re.M) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return p.returncode, {k: m.group(1) if m else None for k, m in found.items()}


def main():
    a, mmu_index, mmu_search = binaries_samples_tmp(inputs=())
    for exe in (mmu_index, mmu_search):
        name = os.path.basename(exe)
        rc, seen = libgomp_view(exe)
        check(rc == 0 and seen == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"},
              f"{name}: unset -> passive, spin count 0 (got rc {rc}, {seen})")
        rc, seen = libgomp_view(exe, OMP_WAIT_POLICY="ACTIVE")
        check(seen["OMP_WAIT_POLICY"] == "ACTIVE" and seen["GOMP_SPINCOUNT"] not in (None, "0"),
              f"{name}: the user's OMP_WAIT_POLICY=ACTIVE wins (got {seen})")
        rc, seen = libgomp_view(exe, GOMP_SPINCOUNT="12345")
        check(seen["GOMP_SPINCOUNT"] == "12345", f"{name}: the user's GOMP_SPINCOUNT wins (got {seen})")
    # Every other name is looked up as glibc does: the store named by MMU_STORE
    # is the one mmu-search reports missing.
    missing = os.path.join(a.tmp, "no-such-store")
    p = subprocess.run([mmu_search, "--list-spaces"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MMU_STORE=missing))
    check(p.returncode != 0 and missing in p.stderr, f"MMU_STORE reaches mmu-search's getenv (stderr: {p.stderr!r})")
    sys.exit(CHECKS.summary())


if __name__ == "__main__":
    main()
