"""The small test harness the end-to-end scripts share: a check counter for
flat scripts, and a case runner for scripts made of named check groups. Both
end with the line `N passed, M failed` that ctest logs and CI read."""
import argparse
import math
import os
import shutil
import subprocess
import sys
import traceback


def binaries_samples_tmp(inputs=("--samples",)):
    """Parses --bin BUILD --tmp DIR and the input flags (default --samples DIR), empties tmp,
    returns (args, mmu-index, mmu-search)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    for flag in inputs:
        ap.add_argument(flag, required=True)
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    return a, os.path.join(a.bin, "mmu-index"), os.path.join(a.bin, "mmu-search")


class CaseFailure(AssertionError):
    """Raised by a case to fail with a message (not a traceback)."""


def need(cond, why):
    """Fails the running case with `why` unless cond holds."""
    if not cond:
        raise CaseFailure(why)


def case_list():
    """(cases, case): a list for run_cases and a decorator @case("name") appending to it."""
    cases = []

    def case(name):
        def deco(fn):
            cases.append((name, fn))
            return fn
        return deco
    return cases, case


class Env:
    """What a script's setup hands its cases (binaries, folders, stores)."""


def run(*args, ok=True, timeout=900):
    """Runs a command; with ok=True a non-zero exit fails the case with its stderr."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if ok and p.returncode != 0:
        raise CaseFailure("command failed (%d): %s\n%s" % (p.returncode, " ".join(map(str, args)), p.stderr))
    return p


class Checks:
    """check(cond, what) counts; summary() prints the closing line and returns the exit code."""

    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed.append(what)
            print("FAIL", what, flush=True)
        return cond

    def summary(self):
        print(f"{self.passed} passed, {len(self.failed)} failed")
        return 1 if self.failed else 0


def run_cases(cases, env, setup, only=None):
    """Runs setup(env), then each (name, fn(env)) whose name contains `only`;
    prints ok/FAIL per case and the closing line; returns the exit code."""
    try:
        setup(env)
    except Exception as e:  # noqa: BLE001 -- nothing else can run
        why = str(e) if isinstance(e, CaseFailure) else traceback.format_exc()
        print("FAIL setup: %s" % why)
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    for name, fn in cases:
        if only and only not in name:
            continue
        try:
            fn(env)
        except CaseFailure as e:
            failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
        except Exception:  # noqa: BLE001 -- a bug in the test script is still a failure
            failed += 1
            print("FAIL %s: test error: %s" % (name, traceback.format_exc().strip().replace("\n", " | ")), flush=True)
        else:
            passed += 1
            print("ok   %s" % name, flush=True)
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def unit(v):
    """v scaled to length 1 (a numpy vector)."""
    return v / (v ** 2).sum() ** 0.5


def haversine_deg(ra1, dec1, ra2, dec2):
    """Angular separation in degrees, the formula the product uses."""
    r = math.radians
    h = math.sin(r(dec2 - dec1) / 2) ** 2 + math.cos(r(dec1)) * math.cos(r(dec2)) * math.sin(r(ra2 - ra1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))
