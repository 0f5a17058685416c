#!/usr/bin/env python3
"""Issue 16: a build that cannot write (the disk full, or the file-size limit reached) fails naming what it
was writing, exits non-zero without a crash, and leaves the previous store exactly as queryable as before.
The limit is RLIMIT_FSIZE with SIGXFSZ ignored, so every write past it fails with EFBIG as on a full disk;
several limits stop the build at different files (catalog, vectors, fit, CURRENT)."""
import glob
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402

CASES, case = case_list()


def copy_samples(env, root, surveys_files):
    for survey, n in surveys_files:
        for src in sorted(glob.glob(os.path.join(env.samples, survey, "*", "*", "*.hdf5")))[:n]:
            dst = os.path.join(root, os.path.relpath(src, env.samples))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)


def limited(limit_bytes):
    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), as ENOSPC from a full disk
    return pre


def answer(env, store):
    return run(env.search, "--store", store, "--like", env.query_id, "--k", "5", "--format", "json").stdout


def setup(env):
    env.root = os.path.join(env.tmp, "tree")
    copy_samples(env, env.root, (("legacysurvey", 3), ("desi", 3)))
    env.store = os.path.join(env.tmp, "store")
    run(env.index, "build", env.root, "--store", env.store, "--quiet")
    env.current = open(os.path.join(env.store, "CURRENT")).read()
    db = sqlite3.connect(os.path.join(env.store, env.current.strip(), "catalog.sqlite"))
    env.query_id = db.execute("SELECT object_id FROM objects WHERE modality = 'image' LIMIT 1").fetchone()[0]
    db.close()
    env.before = answer(env, env.store)
    copy_samples(env, env.root, (("legacysurvey", 8), ("desi", 8)))  # more files: the rebuild has work to write


@case("a rebuild that runs out of space at any of several points fails by name and leaves the store as it was")
def _(env):
    stopped = 0
    for limit in (1 << 10, 8 << 10, 64 << 10, 128 << 10, 512 << 10):
        p = subprocess.run([env.index, "build", env.root, "--store", env.store, "--quiet", "--refit"],
                           capture_output=True, text=True, timeout=300, preexec_fn=limited(limit))
        if p.returncode == 0:
            continue  # the limit was above everything this build writes
        stopped += 1
        need(0 < p.returncode < 70, "limit %d: exit %d (crash or internal error):\n%s" % (limit, p.returncode, p.stderr))
        need(env.store in p.stderr or "gen-" in p.stderr, "limit %d: the error names no store file:\n%s" % (limit, p.stderr))
        need(open(os.path.join(env.store, "CURRENT")).read() == env.current, "limit %d: CURRENT changed" % limit)
        need(answer(env, env.store) == env.before, "limit %d: the store answers differently" % limit)
    need(stopped >= 2, "only %d of the limits stopped the build: the test no longer reaches the writes" % stopped)
    run(env.index, "build", env.root, "--store", env.store, "--quiet", "--refit")  # room again: it builds
    need(open(os.path.join(env.store, "CURRENT")).read() != env.current, "the build with room did not commit")
    need(not glob.glob(os.path.join(env.store, "gen-*.tmp")), "an unfinished generation was left behind")


def main():
    args, index, search = binaries_samples_tmp()
    env = type("Env", (), {})()
    env.index, env.search, env.samples, env.tmp = index, search, args.samples, args.tmp
    return run_cases(CASES, env, setup)


if __name__ == "__main__":
    sys.exit(main())
