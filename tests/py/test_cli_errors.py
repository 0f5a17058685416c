#!/usr/bin/python3
"""Bad-input behaviour of mmu-index and mmu-search, checked through the real binaries.

    /usr/bin/python3 tests/py/test_cli_errors.py --bin build --tmp /tmp/scratch

Writes small MMU fixtures with h5py, builds one good store, then feeds each
kind of bad input to the binaries.  Every failing run must: exit non-zero and
not 70 (70 = internal bug), not crash or hang, print a message naming the
thing at fault (file, dataset, object id, flag), and -- for builds into an
existing store -- leave that store byte-for-byte as it was, with no
gen-*.tmp leftover.

Prints one line per case (``ok   <case>`` / ``FAIL <case>: <why>``) and ends
with ``<P> passed, <F> failed``; exits 1 when any case failed.
Needs Debian's /usr/bin/python3 (numpy, h5py).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmu_fixtures as fx  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CaseFailure, case_list, run_cases  # noqa: E402

TIMEOUT_S = 60
EXIT_INTERNAL = 70
# Text that must never reach a user's terminal on bad input.
CRASH_MARKERS = ("Traceback", "terminate called", "Segmentation fault", "core dumped", "Aborted",
                 "internal error", "HDF5-DIAG", "AddressSanitizer", "runtime error:", "std::")




def fail(msg):
    raise CaseFailure(msg)


class Result:
    def __init__(self, argv, rc, out, err, seconds, timed_out):
        self.argv, self.rc, self.out, self.err, self.seconds, self.timed_out = argv, rc, out, err, seconds, timed_out

    def describe(self):
        err = self.err.strip().replace("\n", " | ")
        if len(err) > 600:
            err = err[:600] + "..."
        out = self.out.strip().replace("\n", " | ")
        if len(out) > 200:
            out = out[:200] + "..."
        return "`%s` -> rc=%s, stderr: %r, stdout: %r" % (" ".join(self.argv), self.rc, err, out)


class Env:
    def __init__(self, bindir, tmp):
        self.bindir = os.path.abspath(bindir)
        self.tmp = os.path.abspath(tmp)
        self.work = os.path.join(self.tmp, "cli_errors")
        self.good_data = os.path.join(self.work, "good-data")
        self.store = os.path.join(self.work, "store")
        self.image_file = self.spectrum_file = None
        self._n = 0

    def new_dir(self, label):
        self._n += 1
        d = os.path.join(self.work, "%02d-%s" % (self._n, label))
        os.makedirs(d)
        return d

    def binary(self, name):
        path = os.path.join(self.bindir, name)
        # The lead may be relinking it right now: wait a little for it to reappear.
        deadline = time.time() + 120
        while not (os.path.isfile(path) and os.access(path, os.X_OK)):
            if time.time() > deadline:
                fail("binary %s is missing" % path)
            time.sleep(2)
        return path

    def run(self, name, *args, extra_env=None):
        argv = [self.binary(name)] + [str(a) for a in args]
        env = dict(os.environ)
        env.pop("MMU_STORE", None)
        env.update(extra_env or {})
        for attempt in range(5):
            t0 = time.time()
            try:
                p = subprocess.run(argv, cwd=self.work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired as e:
                return Result(argv, None, (e.stdout or b"").decode("utf-8", "replace"),
                              (e.stderr or b"").decode("utf-8", "replace"), time.time() - t0, True)
            except OSError:  # ETXTBSY / ENOENT while being rebuilt
                if attempt == 4:
                    raise
                time.sleep(3)
                continue
            return Result(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                          p.stderr.decode("utf-8", "replace"), time.time() - t0, False)

    def index(self, *args):
        return self.run("mmu-index", *args)

    def search(self, *args, extra_env=None):
        return self.run("mmu-search", *args, extra_env=extra_env)


# ---------------------------------------------------------------- assertions

def check_no_crash(r):
    if r.timed_out:
        fail("did not finish within %d s: %s" % (TIMEOUT_S, r.describe()))
    if r.rc is not None and r.rc < 0:
        fail("killed by signal %d (crash): %s" % (-r.rc, r.describe()))
    if r.rc == EXIT_INTERNAL:
        fail("exit 70 (internal error) on user input: %s" % r.describe())
    for m in CRASH_MARKERS:
        if m in r.err or m in r.out:
            fail("output contains %r (crash/internal detail): %s" % (m, r.describe()))


def expect_ok(r, what=""):
    check_no_crash(r)
    if r.rc != 0:
        fail("%sexpected exit 0: %s" % (what + ": " if what else "", r.describe()))


def expect_error(r, rcs, names=(), patterns=()):
    """rcs: allowed exit codes; names: substrings stderr must contain;
    patterns: regexes stderr must match."""
    check_no_crash(r)
    if r.rc == 0:
        fail("exit 0 on bad input: %s" % r.describe())
    if r.rc not in rcs:
        fail("exit %s, expected %s: %s" % (r.rc, " or ".join(map(str, rcs)), r.describe()))
    if r.rc == 1 and "error:" not in r.err:
        fail("no 'error:' line on stderr: %s" % r.describe())
    missing = [n for n in names if n not in r.err]
    if missing:
        fail("stderr does not name %s: %s" % (", ".join(repr(m) for m in missing), r.describe()))
    for p in patterns:
        if not re.search(p, r.err):
            fail("stderr does not match /%s/: %s" % (p, r.describe()))


def csv_rows(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("rank,object_id"):
        fail("no CSV header in stdout: %r" % text[:300])
    return [ln.split(",") for ln in lines[1:]]


def store_state(store):
    """What must not change when a build into `store` fails."""
    cur_path = os.path.join(store, "CURRENT")
    with open(cur_path) as f:
        current = f.read()
    gen = os.path.join(store, current.strip())
    key = {"CURRENT": current,
           "catalog.sqlite": fx.sha256_file(os.path.join(gen, "catalog.sqlite"))}
    spaces = os.path.join(gen, "spaces")
    for sp in sorted(os.listdir(spaces)):
        key["%s/vectors.f32" % sp] = fx.sha256_file(os.path.join(spaces, sp, "vectors.f32"))
    return {"key": key, "tree": fx.tree_snapshot(store)}


def check_store_unchanged(store, before):
    after = store_state(store)
    diffs = [k for k in before["key"] if before["key"][k] != after["key"].get(k)]
    if diffs:
        fail("previous store changed: %s differ" % ", ".join(diffs))
    leftovers = [n for n in os.listdir(store) if n.startswith("gen-") and n.endswith(".tmp")]
    if leftovers:
        fail("leftover in store: %s" % ", ".join(leftovers))
    b, a = before["tree"], after["tree"]
    added = sorted(set(a) - set(b))
    removed = sorted(set(b) - set(a))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    if added or removed or changed:
        fail("store tree changed: added %s, removed %s, changed %s" % (added, removed, changed))


def failing_build(env, roots, names, patterns=(), rcs=(1,)):
    """Build roots into the good store; it must fail and leave the store as it was."""
    before = store_state(env.store)
    r = env.index("build", *roots, "--store", env.store, "--quiet")
    problems = []
    for check in (lambda: expect_error(r, rcs, names, patterns), lambda: check_store_unchanged(env.store, before)):
        try:
            check()
        except CaseFailure as e:
            problems.append(str(e))
    if problems:
        fail("; AND ".join(problems))
    return r


def tree_with(env, label, survey, datasets, cell=fx.CELL, keep_other=True, compression="lzf"):
    """A fresh root holding one file for `survey` built from `datasets`, plus a copy
    of the good file of the other modality (so the bad file is not alone)."""
    root = env.new_dir(label)
    path = fx.write_mmu_file(fx.mmu_path(root, survey, cell), datasets, compression=compression)
    if keep_other:
        other_survey, other_src = ((fx.SPECTRUM_SURVEY, env.spectrum_file) if survey == fx.IMAGE_SURVEY
                                   else (fx.IMAGE_SURVEY, env.image_file))
        dst = fx.mmu_path(root, other_survey)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(other_src, dst)
    return root, path


# ---------------------------------------------------------------------- cases

CASES, case = case_list()


@case("0 good store answers --like <image id> --k 3 --format csv with 3 rows")
def _(env):
    r = env.search("--store", env.store, "--like", "LS-000001", "--k", 3, "--format", "csv")
    expect_ok(r)
    rows = csv_rows(r.out)
    if len(rows) != 3:
        fail("expected 3 rows, got %d: %s" % (len(rows), r.describe()))
    if any(row[1] == "LS-000001" for row in rows):
        fail("the query object is among its own neighbours: %s" % r.describe())
    if any(row[2] != "legacysurvey" for row in rows):
        fail("image neighbours from another survey: %s" % r.describe())


@case("1 unknown --like id names the id and the object count")
def _(env):
    r = env.search("--store", env.store, "--like", "NO-SUCH-ID-4242", "--k", 3)
    expect_error(r, (1,), ["NO-SUCH-ID-4242"], [r"\b14\b"])


@case("2a no store (folder missing) names the path and `mmu-index build`")
def _(env):
    missing = os.path.join(env.work, "no-store-here")
    r = env.search("--store", missing, "--like", "LS-000001")
    expect_error(r, (1,), [missing, "mmu-index build"])
    if os.path.exists(missing):
        fail("mmu-search created %s" % missing)


@case("2b no store (empty folder, no CURRENT) names the path and `mmu-index build`")
def _(env):
    empty = env.new_dir("empty-store")
    r = env.search("--store", empty, "--list-spaces")
    expect_error(r, (1,), [empty, "mmu-index build"])
    if os.listdir(empty):
        fail("mmu-search wrote into %s: %s" % (empty, os.listdir(empty)))


@case("2c no --store and no ./mmu-store names the default path and `mmu-index build`")
def _(env):
    if os.path.exists(os.path.join(env.work, "mmu-store")):
        fail("test setup: %s/mmu-store exists" % env.work)
    r = env.search("--like", "LS-000001")
    expect_error(r, (1,), ["mmu-store", "mmu-index build"])


@case("2d $MMU_STORE naming a missing folder names it and `mmu-index build`")
def _(env):
    missing = os.path.join(env.work, "env-store-missing")
    r = env.search("--like", "LS-000001", extra_env={"MMU_STORE": missing})
    expect_error(r, (1,), [missing, "mmu-index build"])


@case("3 input file that is not HDF5 names the file; store unchanged")
def _(env):
    root = env.new_dir("not-hdf5")
    path = fx.mmu_path(root, fx.IMAGE_SURVEY)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("object_id,ra,dec\nLS-1,30.5,0.5\n" * 50)
    failing_build(env, [root], [path])


@case("4 truncated HDF5 file (half its bytes) names the file; store unchanged")
def _(env):
    root = env.new_dir("truncated")
    path = fx.mmu_path(root, fx.IMAGE_SURVEY)
    os.makedirs(os.path.dirname(path))
    with open(env.image_file, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    failing_build(env, [root], [path])


def missing_dataset_case(name, survey=fx.IMAGE_SURVEY):
    def body(env):
        d = fx.image_datasets() if survey == fx.IMAGE_SURVEY else fx.spectrum_datasets()
        del d[name]
        root, path = tree_with(env, "no-" + name, survey, d)
        failing_build(env, [root], [path, name])
    return body


for _name, _survey in (("object_id", fx.IMAGE_SURVEY), ("ra", fx.IMAGE_SURVEY), ("dec", fx.SPECTRUM_SURVEY),
                       ("spectrum_lambda", fx.SPECTRUM_SURVEY)):
    case("5 file lacking '%s' names the file and the dataset" % _name)(missing_dataset_case(_name, _survey))


@case("6a image_array 3-D names the file and image_array")
def _(env):
    d = fx.image_datasets()
    d["image_array"] = d["image_array"][:, 0]
    root, path = tree_with(env, "image-3d", fx.IMAGE_SURVEY, d)
    failing_build(env, [root], [path, "image_array"])


@case("6b image_mask not matching image_array names the file and image_mask")
def _(env):
    d = fx.image_datasets()
    d["image_mask"] = np.ones((6, 100, 100), dtype=bool)
    root, path = tree_with(env, "mask-shape", fx.IMAGE_SURVEY, d)
    failing_build(env, [root], [path, "image_mask"])


@case("6c image_mask with a different row count names the file and image_mask")
def _(env):
    d = fx.image_datasets()
    d["image_mask"] = d["image_mask"][:5]
    root, path = tree_with(env, "mask-rows", fx.IMAGE_SURVEY, d)
    failing_build(env, [root], [path, "image_mask"])


@case("6d spectrum_ivar shaped unlike spectrum_flux names the file and spectrum_ivar")
def _(env):
    d = fx.spectrum_datasets()
    d["spectrum_ivar"] = d["spectrum_ivar"][:, :-1]
    root, path = tree_with(env, "ivar-shape", fx.SPECTRUM_SURVEY, d)
    failing_build(env, [root], [path, "spectrum_ivar"])


@case("6e ra with a different row count than object_id names the file and ra")
def _(env):
    d = fx.image_datasets()
    d["ra"] = d["ra"][:-1]
    root, path = tree_with(env, "ra-rows", fx.IMAGE_SURVEY, d)
    failing_build(env, [root], [path, "'ra'"])


@case("6f image_array of strings names the file and image_array")
def _(env):
    d = fx.image_datasets()
    d["image_array"] = np.full(d["image_array"].shape, b"x", dtype="S1")
    root, path = tree_with(env, "image-strings", fx.IMAGE_SURVEY, d)
    failing_build(env, [root], [path, "image_array"])


@case("6g object_id of floats names the file and object_id")
def _(env):
    d = fx.spectrum_datasets()
    d["object_id"] = d["object_id"].astype(np.float64)
    root, path = tree_with(env, "id-float", fx.SPECTRUM_SURVEY, d)
    failing_build(env, [root], [path, "object_id"])


def image_with(value, obj, masked, mask_4d=False):
    d = fx.image_datasets(mask_3d=not mask_4d)
    c = fx.IMAGE_SIZE // 2
    d["image_array"][obj, 2, c, c] = value
    if masked:
        if mask_4d:
            d["image_mask"][obj, 2, c, c] = False
        else:
            d["image_mask"][obj, c, c] = False
    return d


@case("7a NaN in an unmasked image pixel names file, image_array and object id; store unchanged")
def _(env):
    root, path = tree_with(env, "image-nan", fx.IMAGE_SURVEY, image_with(np.nan, 3, masked=False))
    failing_build(env, [root], [path, "image_array", "LS-000004"])


@case("7b +Inf in an unmasked image pixel names file, image_array and object id; store unchanged")
def _(env):
    root, path = tree_with(env, "image-inf", fx.IMAGE_SURVEY, image_with(np.inf, 1, masked=False))
    failing_build(env, [root], [path, "image_array", "LS-000002"])


@case("7c NaN in a usable spectrum pixel names file, spectrum_flux and object id; store unchanged")
def _(env):
    d = fx.spectrum_datasets()
    d["spectrum_flux"][5, 3000] = np.nan
    root, path = tree_with(env, "spec-nan", fx.SPECTRUM_SURVEY, d)
    failing_build(env, [root], [path, "spectrum_flux", str(d["object_id"][5])])


def masked_nan_builds(env, label, survey, datasets, query_id):
    root, _ = tree_with(env, label, survey, datasets)
    store = os.path.join(env.new_dir(label + "-store"), "store")
    r = env.index("build", root, "--store", store, "--quiet")
    expect_ok(r, "build with a NaN only in a masked pixel")
    r = env.search("--store", store, "--like", query_id, "--k", 2, "--format", "csv")
    expect_ok(r, "query of the object with the masked NaN")
    if len(csv_rows(r.out)) != 2:
        fail("expected 2 rows: %s" % r.describe())
    for row in csv_rows(r.out):
        if not re.match(r"^-?[0-9.]+$", row[5]) or not np.isfinite(float(row[5])):
            fail("non-finite score: %s" % r.describe())


@case("7d NaN in a masked image pixel (image_mask False) builds")
def _(env):
    masked_nan_builds(env, "image-nan-masked", fx.IMAGE_SURVEY, image_with(np.nan, 3, masked=True), "LS-000004")


@case("7e NaN in a masked image pixel with a per-band (N,4,H,W) mask builds")
def _(env):
    masked_nan_builds(env, "image-nan-masked4d", fx.IMAGE_SURVEY,
                      image_with(np.nan, 3, masked=True, mask_4d=True), "LS-000004")


@case("7f NaN in a masked spectrum pixel (spectrum_mask True) builds")
def _(env):
    d = fx.spectrum_datasets()
    d["spectrum_flux"][5, 3000] = np.nan
    d["spectrum_mask"][5, 3000] = True
    masked_nan_builds(env, "spec-nan-masked", fx.SPECTRUM_SURVEY, d, str(d["object_id"][5]))


@case("8a duplicate object_id within one file names the id and the file; store unchanged")
def _(env):
    d = fx.image_datasets()
    d["object_id"][4] = d["object_id"][1]
    root, path = tree_with(env, "dup-in-file", fx.IMAGE_SURVEY, d)
    failing_build(env, [root], [path, "LS-000002"])


@case("8b duplicate object_id across two files of one survey names the id and both files")
def _(env):
    root, path1 = tree_with(env, "dup-across-files", fx.IMAGE_SURVEY, fx.image_datasets())
    ids = np.array([("LS-%06d" % (101 + i)).encode() for i in range(6)], dtype="S24")
    ids[2] = b"LS-000003"
    d2 = fx.image_datasets(seed=7, ids=ids, box=fx.OTHER_CELL_BOX, cell=fx.OTHER_CELL)
    path2 = fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY, fx.OTHER_CELL), d2)
    failing_build(env, [root], [path1, path2, "LS-000003"])


def shared_id_store(env):
    """A store where legacysurvey and desi both hold integer ids 39627000000000001..6."""
    if getattr(env, "_shared_store", None):
        return env._shared_store
    root = env.new_dir("same-id-two-surveys")
    fx.write_mmu_file(fx.mmu_path(root, fx.IMAGE_SURVEY), fx.image_datasets(ids=fx.spectrum_ids(6)))
    fx.write_mmu_file(fx.mmu_path(root, fx.SPECTRUM_SURVEY), fx.spectrum_datasets())
    store = os.path.join(env.new_dir("same-id-store"), "store")
    r = env.index("build", root, "--store", store, "--quiet")
    expect_ok(r, "build with one id in two different surveys")
    env._shared_store = store
    return store


SHARED_ID = "39627000000000003"


@case("8c same id in two surveys builds; --like without --survey names both surveys and --survey")
def _(env):
    store = shared_id_store(env)
    r = env.search("--store", store, "--like", SHARED_ID, "--k", 3)
    expect_error(r, (1,), [SHARED_ID, "legacysurvey", "desi", "--survey"])


@case("8d --survey desi / legacysurvey resolves a shared id; an absent survey names it")
def _(env):
    store = shared_id_store(env)
    for survey, n in (("desi", 3), ("legacysurvey", 3), ("desi/edr_sv3", 3)):
        r = env.search("--store", store, "--like", SHARED_ID, "--survey", survey, "--k", n, "--format", "csv")
        expect_ok(r, "--survey " + survey)
        rows = csv_rows(r.out)
        want = survey.split("/")[0]
        if len(rows) != n or any(row[2] != want for row in rows) or any(row[1] == SHARED_ID for row in rows):
            fail("--survey %s: expected %d %s neighbours other than the query: %s" % (survey, n, want, r.describe()))
    r = env.search("--store", store, "--like", SHARED_ID, "--survey", "sdss", "--k", 3)
    expect_error(r, (1,), [SHARED_ID, "sdss"])


@case("9a --k 0 names --k")
def _(env):
    expect_error(env.search("--store", env.store, "--like", "LS-000001", "--k", 0), (1, 2), ["--k"])


@case("9b --k -3 names --k")
def _(env):
    expect_error(env.search("--store", env.store, "--like", "LS-000001", "--k", -3), (1, 2), ["--k"])


@case("9c --k abc is a usage error naming --k")
def _(env):
    expect_error(env.search("--store", env.store, "--like", "LS-000001", "--k", "abc"), (2,), ["--k"])


@case("9d --k larger than the space returns all N-1 others and says so on stderr")
def _(env):
    r = env.search("--store", env.store, "--like", "LS-000001", "--k", 100, "--format", "csv")
    expect_ok(r)
    rows = csv_rows(r.out)
    if len(rows) != 5:
        fail("expected the 5 other images, got %d rows: %s" % (len(rows), r.describe()))
    if not (re.search(r"\b100\b", r.err) and re.search(r"\b5\b", r.err)):
        fail("stderr does not say that only 5 of the 100 asked exist: %s" % r.describe())
    r = env.search("--store", env.store, "--like", "39627000000000001", "--k", 8, "--format", "json")
    expect_ok(r)
    if r.out.count('"rank"') != 7 or not re.search(r"\b7\b", r.err):
        fail("--k 8 on an 8-spectrum space: expected 7 results and a note: %s" % r.describe())


@case("10a bad --format value names --format and the value")
def _(env):
    r = env.search("--store", env.store, "--like", "LS-000001", "--format", "xml")
    expect_error(r, (1, 2), ["--format", "xml"])


@case("10b --space naming a space that does not exist names it and lists the real ones")
def _(env):
    r = env.search("--store", env.store, "--like", "LS-000001", "--space", "galaxy")
    expect_error(r, (1,), ["galaxy", "image", "spectrum"])


@case("10c --space the object has no vector in names the space and the object")
def _(env):
    r = env.search("--store", env.store, "--like", "LS-000001", "--space", "spectrum")
    expect_error(r, (1,), ["spectrum", "LS-000001"])


@case("10d mmu-search with neither --like nor --list-spaces names --like")
def _(env):
    expect_error(env.search("--store", env.store), (1, 2), ["--like"])


@case("10e --like without a value is a usage error naming --like")
def _(env):
    expect_error(env.search("--store", env.store, "--like"), (2,), ["--like"])


@case("10f unknown flag is a usage error naming the flag (mmu-search, mmu-index)")
def _(env):
    expect_error(env.search("--store", env.store, "--like", "LS-000001", "--frobnicate"), (2,), ["--frobnicate"])
    expect_error(env.index("build", env.good_data, "--store", env.store, "--frobnicate"), (2,), ["--frobnicate"])


@case("10g --like together with --list-spaces is a usage error")
def _(env):
    expect_error(env.search("--store", env.store, "--like", "LS-000001", "--list-spaces"), (2,),
                 ["--like", "--list-spaces"])


@case("10h mmu-index without subcommand / build without roots are usage errors")
def _(env):
    expect_error(env.index(), (2,))
    expect_error(env.index("build", "--store", env.store), (2,), ["roots"])


@case("10i mmu-index with an unknown subcommand is a usage error naming it")
def _(env):
    expect_error(env.index("rebuild-everything"), (2,), ["rebuild-everything"])


@case("11a non-existent input root names it; store unchanged")
def _(env):
    missing = os.path.join(env.work, "no-such-data")
    failing_build(env, [missing], [missing])


@case("11b root with no hdf5 files names it; store unchanged")
def _(env):
    root = env.new_dir("no-hdf5")
    os.makedirs(os.path.join(root, "legacysurvey", "dr10_south_21", "healpix=1113"))
    with open(os.path.join(root, "legacysurvey", "dr10_south_21", "healpix=1113", "README.txt"), "w") as f:
        f.write("nothing here\n")
    failing_build(env, [root], [root])


@case("11c one good root plus a non-existent root fails naming the missing one; store unchanged")
def _(env):
    missing = os.path.join(env.work, "typo-in-path")
    failing_build(env, [env.good_data, missing], [missing])


@case("12a build into a non-empty folder that is not a store is refused; folder untouched")
def _(env):
    d = env.new_dir("my-thesis")
    with open(os.path.join(d, "thesis.tex"), "w") as f:
        f.write("\\documentclass{article}\n")
    os.makedirs(os.path.join(d, "figs"))
    with open(os.path.join(d, "figs", "fig1.pdf"), "wb") as f:
        f.write(b"%PDF-1.4\n" + bytes(range(256)))
    before = fx.tree_snapshot(d)
    r = env.index("build", env.good_data, "--store", d, "--quiet")
    try:
        expect_error(r, (1,), [d])
    finally:
        after = fx.tree_snapshot(d)
        if after != before:
            fail("folder changed: added %s, removed %s" % (sorted(set(after) - set(before)),
                                                           sorted(set(before) - set(after))))


@case("12b build into a path that is a regular file is refused; file untouched")
def _(env):
    d = env.new_dir("store-is-file")
    path = os.path.join(d, "notes.txt")
    with open(path, "w") as f:
        f.write("do not overwrite\n")
    r = env.index("build", env.good_data, "--store", path, "--quiet")
    try:
        expect_error(r, (1,), [path])
    finally:
        with open(path) as f:
            if f.read() != "do not overwrite\n":
                fail("file %s was changed" % path)
        if os.listdir(d) != ["notes.txt"]:
            fail("files appeared next to it: %s" % os.listdir(d))


@case("13 after all failed builds the good store is unchanged and still answers")
def _(env):
    check_store_unchanged(env.store, env.initial_state)
    r = env.search("--store", env.store, "--like", "LS-000001", "--k", 3, "--format", "csv")
    expect_ok(r)
    if r.out != env.initial_answer:
        fail("answer changed: %r vs %r" % (r.out, env.initial_answer))


# ---------------------------------------------------------------------- main

def setup(env):
    if os.path.isdir(env.work):
        shutil.rmtree(env.work)
    os.makedirs(env.work)
    env.image_file, env.spectrum_file = fx.write_good_tree(env.good_data)
    r = env.index("build", env.good_data, "--store", env.store, "--quiet")
    expect_ok(r, "build of the good fixture")
    env.initial_state = store_state(env.store)
    r = env.search("--store", env.store, "--like", "LS-000001", "--k", 3, "--format", "csv")
    expect_ok(r, "query of the good store")
    env.initial_answer = r.out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="folder holding mmu-index and mmu-search")
    ap.add_argument("--tmp", required=True, help="scratch folder (a cli_errors/ subfolder is replaced)")
    ap.add_argument("-k", dest="only", default=None, help="run only cases whose name contains this")
    args = ap.parse_args()
    env = Env(args.bin, args.tmp)

    return run_cases(CASES, env, setup, args.only)


if __name__ == "__main__":
    sys.exit(main())
