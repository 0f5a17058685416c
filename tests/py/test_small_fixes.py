#!/usr/bin/python3
"""Store lock and interrupt behaviour of `mmu-index build`, through the real binary.

    /usr/bin/python3 tests/py/test_small_fixes.py --bin build --generator tools/make_samples.py --tmp /tmp/scratch

Generates a set large enough that a build lasts about a second, then checks:
a second build of the same store fails at once naming the first one's pid;
with --wait it succeeds after the first; SIGINT during a build exits 130 and
leaves no gen-*.tmp (nor, for a first build, the store folder); `mmu-search
--like-file` refuses /dev/zero and over a million ids, naming the file and line;
a NaN stored vector is reported as such, naming the object and space.
Needs Debian's /usr/bin/python3.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

TIMEOUT_S = 120


def fail(why):
    print("FAIL " + why)
    sys.exit(1)


def wait_for(pred, what, limit_s=30):
    t0 = time.time()
    while not pred():
        if time.time() - t0 > limit_s:
            fail("timed out waiting for " + what)
        time.sleep(0.005)


def lock_pid(store):
    try:
        with open(os.path.join(store, "LOCK")) as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    index = os.path.join(a.bin, "mmu-index")
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    data = os.path.join(a.tmp, "data")
    subprocess.run([sys.executable, a.generator, "--out", data, "--n", "1000", "--jobs", "1"], check=True,
                   stdout=subprocess.DEVNULL, timeout=TIMEOUT_S)

    # A second build while the first holds the lock: fails at once, naming its pid.
    store = os.path.join(a.tmp, "store")
    first = subprocess.Popen([index, "build", data, "--store", store, "--quiet"], stderr=subprocess.PIPE, text=True)
    wait_for(lambda: lock_pid(store) == str(first.pid), "the first build's pid in LOCK")
    t0 = time.time()
    second = subprocess.run([index, "build", data, "--store", store, "--quiet"], capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    elapsed = time.time() - t0
    if first.poll() is not None:
        fail("the first build ended before the second was tried; the set is too small for this machine")
    if second.returncode != 1:
        fail("second build exit %d, want 1: %s" % (second.returncode, second.stderr))
    if str(first.pid) not in second.stderr or "LOCK" not in second.stderr:
        fail("second build's error does not name pid %d and the lock: %r" % (first.pid, second.stderr))
    if elapsed > 1.0:
        fail("second build took %.2f s to refuse, want < 1 s" % elapsed)
    print("ok   second build refused at once naming pid %d (%.3f s)" % (first.pid, elapsed))
    if first.wait(timeout=TIMEOUT_S) != 0:
        fail("first build failed: " + first.stderr.read())

    # --wait: a second build waits for the first, then succeeds.
    first = subprocess.Popen([index, "build", data, "--store", store, "--quiet", "--refit"])
    wait_for(lambda: lock_pid(store) == str(first.pid), "the first build's pid in LOCK")
    waiter = subprocess.run([index, "build", data, "--store", store, "--quiet", "--wait"], capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    rc_first = first.wait(timeout=TIMEOUT_S)
    if rc_first != 0 or waiter.returncode != 0:
        fail("with --wait: exits %d and %d, want 0 and 0: %s" % (rc_first, waiter.returncode, waiter.stderr))
    if "waiting for process %d" % first.pid not in waiter.stderr:
        fail("--wait did not say whom it waited for: %r" % waiter.stderr)
    if lock_pid(store) != "":
        fail("LOCK still names a pid after both builds ended: %r" % lock_pid(store))
    print("ok   --wait succeeded after the first build")

    # SIGINT once the unfinished generation exists: exit 130, nothing left behind.
    for name, existing in (("into an existing store", store), ("first build", os.path.join(a.tmp, "fresh"))):
        before = sorted(os.listdir(existing)) if os.path.isdir(existing) else None
        p = subprocess.Popen([index, "build", data, "--store", existing, "--quiet", "--refit"],
                             stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.isdir(existing) and any(n.endswith(".tmp") for n in os.listdir(existing)),
                 "gen-*.tmp of the " + name)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=TIMEOUT_S)
        err = p.stderr.read()
        if rc != 130:
            fail("SIGINT (%s): exit %d, want 130: %s" % (name, rc, err))
        after = sorted(os.listdir(existing)) if os.path.isdir(existing) else None
        if after != before:
            fail("SIGINT (%s): store folder %s became %s" % (name, before, after))
        print("ok   SIGINT %s: exit 130, folder as before (%s)" % (name, after))
    # --like-file is read bounded: a line or id count no id list has fails naming the file and line.
    search = os.path.join(a.bin, "mmu-search")
    many = os.path.join(a.tmp, "many_ids.txt")
    with open(many, "w") as f:
        f.write("".join("x%d\n" % i for i in range(1000001)))
    for path, want in (("/dev/zero", "line 1 is longer than 4096 bytes"), (many, "line 1000001")):
        r = subprocess.run([search, "--store", store, "--like-file", path], capture_output=True, text=True,
                           timeout=TIMEOUT_S)
        if r.returncode != 1 or path not in r.stderr or want not in r.stderr:
            fail("--like-file %s: exit %d, want 1 and a message naming it and %r: %r" % (path, r.returncode, want,
                                                                                       r.stderr))
        print("ok   --like-file %s refused: %s" % (path, r.stderr.strip()))
    # A store whose vectors are all NaN: the error names the object and space, not "the query vector is zero".
    import csv
    import numpy as np
    nan_store = os.path.join(a.tmp, "nan_store")
    shutil.copytree(store, nan_store)
    gen = open(os.path.join(nan_store, "CURRENT")).read().strip()
    vectors = os.path.join(nan_store, gen, "spaces", "spectrum", "vectors.f32")
    np.full(os.path.getsize(vectors) // 4, np.nan, dtype=np.float32).tofile(vectors)
    with open(os.path.join(data, "truth.csv")) as f:
        spectrum_id = next(r["object_id"] for r in csv.DictReader(f) if r["survey"] == "desi")
    r = subprocess.run([search, "--store", nan_store, "--like", spectrum_id, "--space", "spectrum"],
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    if r.returncode != 1 or spectrum_id not in r.stderr or "'spectrum'" not in r.stderr or "not finite" not in r.stderr:
        fail("NaN store: exit %d, want 1 and a message naming %s, the space and 'not finite': %r" %
             (r.returncode, spectrum_id, r.stderr))
    print("ok   NaN stored vector named: " + r.stderr.strip())
    # Garbage in CURRENT comes back escaped and bounded; a NUL in an id does not cut the message.
    bad_current = os.path.join(a.tmp, "bad_current")
    shutil.copytree(store, bad_current)
    with open(os.path.join(bad_current, "CURRENT"), "wb") as f:
        f.write(b"\x00\x01garbage" * 1000)
    r = subprocess.run([search, "--store", bad_current, "--like", "x"], capture_output=True, timeout=TIMEOUT_S)
    err = r.stderr.decode("utf-8", "replace")
    if r.returncode != 1 or b"\x00" in r.stderr or "\\x00\\x01garbage" not in err or len(r.stderr) > 600:
        fail("garbage CURRENT: exit %d, want 1 and an escaped, bounded message: %r" % (r.returncode, r.stderr[:300]))
    print("ok   garbage CURRENT escaped: " + err.strip()[:160])
    r = subprocess.run([search, "--store", store, "--like", "abc\x01def"], capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    if r.returncode != 1 or "abc\\x01def" not in r.stderr:
        fail("control byte in an id: exit %d, want 1 and the id escaped: %r" % (r.returncode, r.stderr))
    print("ok   control byte in an id escaped: " + r.stderr.strip())
    print("all passed")


if __name__ == "__main__":
    main()
