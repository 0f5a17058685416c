#!/usr/bin/python3
"""End-to-end check of every MMU v1 on-disk layout through the real binaries.

    /usr/bin/python3 tests/py/test_layouts.py --bin build --tmp /tmp/scratch [-k WORD]

Writes one small fixture per layout with layout_fixtures.py (legacysurvey LZF images, hsc
gzip/big-endian images, desi spectra with HEALPIX next to healpix, sdss/boss padded spectra with
PLUG_RA/PLUG_DEC only, gaia XP coefficients keyed by source_id, plasticc light curves without
healpix in two files per cell, cfa/csp per-object scalar files in healpix=0714, manga groups per
object, desi_provabgs catalog-only .h5), then checks the contract of the reader:

- `mmu-index build ROOT --store S --quiet` exits 0; the catalog holds every object exactly once
  with survey = dataset folder, subset, canonical id text, the file's ra/dec (float32 sources at
  float32 precision), the stored healpix (recomputed NESTED nside 16 where absent) and the folder
  cell; modality image / spectrum / xp / lightcurve / none per survey;
- one space per modality (`image` for legacysurvey + hsc, `spectrum` for desi + sdss + manga,
  `xp` for gaia, `lightcurve` for plasticc + cfa + csp), count x dim float32, L2-normalised rows;
  desi_provabgs is catalogued with no vector;
- `mmu-search --like ID --survey S --k 3 --format json` answers from the object's space (and agrees
  with a numpy brute force over the stored vectors); for desi_provabgs it exits 1, "no embedding";
- `mmu-index inspect ROOT --format json` describes every file (layout, modality, objects, cells,
  keys with dtype, shape, compression, role);
- a truncated file and a file with garbage over a dataset header: inspect exits 1 with an error in
  the file's entry; build exits 1 naming the file; build --skip-bad exits 0, ingests the rest and
  names the skipped file.

Prints one line per check group (``ok   <group>`` / ``FAIL <group>: <why>``) and ends with
``<P> passed, <F> failed``; exits 1 when any group failed.  Needs Debian's /usr/bin/python3
(numpy, h5py, sqlite3).
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layout_fixtures as lf  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CaseFailure, run_cases  # noqa: E402
from space_reading import generation  # noqa: E402

BUILD_TIMEOUT_S = 600
TIMEOUT_S = 120
EXIT_INTERNAL = 70
CRASH_MARKERS = ("Traceback", "terminate called", "Segmentation fault", "core dumped", "Aborted",
                 "AddressSanitizer", "runtime error:")

SPACES = {"image": ("legacysurvey", "hsc"), "spectrum": ("desi", "sdss", "manga"), "xp": ("gaia",),
          "lightcurve": ("plasticc", "cfa", "csp")}
EMBEDDED = [s for members in SPACES.values() for s in members]
MAX_PROBLEMS = 8




def fail(msg):
    raise CaseFailure(msg)


class Problems:
    """Collects every problem of a check group, then fails once with the first few."""

    def __init__(self):
        self.items = []

    def add(self, msg):
        self.items.append(msg)

    def check(self, cond, msg):
        if not cond:
            self.add(msg)
        return cond

    def done(self):
        if self.items:
            more = len(self.items) - MAX_PROBLEMS
            text = "; ".join(self.items[:MAX_PROBLEMS])
            fail(text + ("; ... and %d more" % more if more > 0 else ""))


# ---------------------------------------------------------------- running the binaries


class Result:
    def __init__(self, argv, rc, out, err, timed_out):
        self.argv, self.rc, self.out, self.err, self.timed_out = argv, rc, out, err, timed_out

    def describe(self):
        err = self.err.strip().replace("\n", " | ")
        out = self.out.strip().replace("\n", " | ")
        return "`%s` -> rc=%s, stderr: %r, stdout: %r" % (" ".join(self.argv), self.rc, err[:600],
                                                          out[:300] + ("..." if len(out) > 300 else ""))


class Env:
    def __init__(self, bindir, tmp):
        self.bindir = os.path.abspath(bindir)
        self.work = os.path.join(os.path.abspath(tmp), "layouts")
        self.root = os.path.join(self.work, "data")
        self.store = os.path.join(self.work, "store")
        self.manifest = None
        self.build = None          # Result of the main build
        self.bad = {}              # kind -> dict(root, file, good_objects)
        self.cache = {}

    def binary(self, name):
        path = os.path.join(self.bindir, name)
        deadline = time.time() + 180     # the lead may be relinking it right now
        while not (os.path.isfile(path) and os.access(path, os.X_OK)):
            if time.time() > deadline:
                fail("binary %s is missing" % path)
            time.sleep(2)
        return path

    def run(self, name, *args, timeout=TIMEOUT_S):
        argv = [self.binary(name)] + [str(a) for a in args]
        env = dict(os.environ)
        env.pop("MMU_STORE", None)
        for attempt in range(5):
            try:
                p = subprocess.run(argv, cwd=self.work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, timeout=timeout)
            except subprocess.TimeoutExpired as e:
                return Result(argv, None, (e.stdout or b"").decode("utf-8", "replace"),
                              (e.stderr or b"").decode("utf-8", "replace"), True)
            except OSError:  # ETXTBSY / ENOENT while being rebuilt
                if attempt == 4:
                    raise
                time.sleep(3)
                argv[0] = self.binary(name)
                continue
            return Result(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                          p.stderr.decode("utf-8", "replace"), False)

    def index(self, *args, timeout=TIMEOUT_S):
        return self.run("mmu-index", *args, timeout=timeout)

    def search(self, *args):
        return self.run("mmu-search", *args)


def check_no_crash(r):
    if r.timed_out:
        fail("did not finish in time: %s" % r.describe())
    if r.rc is not None and r.rc < 0:
        fail("killed by signal %d (crash): %s" % (-r.rc, r.describe()))
    if r.rc == EXIT_INTERNAL:
        fail("exit 70 (internal error): %s" % r.describe())
    for m in CRASH_MARKERS:
        if m in r.err or m in r.out:
            fail("output contains %r: %s" % (m, r.describe()))


def expect_rc(r, rc, what):
    check_no_crash(r)
    if r.rc != rc:
        fail("%s: expected exit %d: %s" % (what, rc, r.describe()))


def parse_json(r, what):
    try:
        return json.loads(r.out)
    except ValueError as e:
        fail("%s: stdout is not JSON (%s): %s" % (what, e, r.describe()))


def same_path(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


# ---------------------------------------------------------------- independent read of the fixtures


def canonical_id(v):
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).rstrip(b"\0").decode("utf-8")
    if isinstance(v, str):
        return v.rstrip("\0")
    return str(int(v))


def read_truth(root):
    """(survey, object_id) -> dict(subset, ra, dec, f32, healpix (stored or None), cell, path),
    read with h5py from the files themselves, layout by layout."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for fn in sorted(files):
            if not fn.endswith((".hdf5", ".h5")):
                continue
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, root).split(os.sep)
            survey, subset, folder = rel[0], rel[1], rel[2]
            cell = int(folder.split("=", 1)[1])
            with h5py.File(path, "r") as f:
                entries = []
                if all(isinstance(f[k], h5py.Group) for k in f):                     # groups per object
                    for i, g in enumerate(f):
                        grp = f[g]
                        entries.append((canonical_id(grp["object_id"][()]), grp["ra"][()], grp["dec"][()],
                                        int(grp["healpix"][()]), i))
                elif f["ra" if "ra" in f else "PLUG_RA"].shape == ():                # per-object scalars
                    entries.append((canonical_id(f["object_id"][()]), f["ra"][()], f["dec"][()],
                                    int(f["healpix"][()]), 0))
                else:                                                                 # row table
                    ids = f["object_id"][:] if "object_id" in f else f["source_id"][:]
                    ra = f["ra"][:] if "ra" in f else f["PLUG_RA"][:]
                    dec = f["dec"][:] if "dec" in f else f["PLUG_DEC"][:]
                    hp = f["healpix"][:] if "healpix" in f else [None] * len(ids)
                    for i in range(len(ids)):
                        entries.append((canonical_id(ids[i]), ra[i], dec[i], None if hp[i] is None else int(hp[i]), i))
            for oid, ra, dec, hp, idx in entries:
                key = (survey, oid)
                if key in out:
                    raise AssertionError("fixture id %s/%s twice" % key)
                out[key] = dict(subset=subset, ra=float(ra), dec=float(dec), f32=np.asarray(ra).dtype == np.float32,
                                healpix=hp, cell=cell, path=os.path.abspath(path), index=idx)
    return out


# ---------------------------------------------------------------- store access


def catalog(store):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(generation(store), "catalog.sqlite"), uri=True)
    try:
        rows = db.execute("SELECT o.row, o.object_id, o.survey, o.subset, o.ra, o.dec, o.healpix, o.hpx_fine, "
                          "o.file_id, o.index_in_file, o.modality, f.path, f.healpix FROM objects o "
                          "LEFT JOIN files f ON f.id = o.file_id ORDER BY o.row").fetchall()
        spaces = {r[0]: dict(modality=r[1], dim=r[2], count=r[3]) for r in
                  db.execute("SELECT name, modality, dim, count FROM spaces").fetchall()}
        space_rows = {}
        for space, vrow, row in db.execute("SELECT space, vrow, row FROM space_rows ORDER BY space, vrow"):
            space_rows.setdefault(space, []).append((vrow, row))
    finally:
        db.close()
    keys = ("row", "object_id", "survey", "subset", "ra", "dec", "healpix", "hpx_fine", "file_id", "index_in_file",
            "modality", "file_path", "file_healpix")
    return [dict(zip(keys, r)) for r in rows], spaces, space_rows


def main_catalog(env):
    if "catalog" not in env.cache:
        if env.build is None or env.build.rc != 0:
            fail("the build of the fixture tree failed, nothing to check (see 'build')")
        try:
            env.cache["catalog"] = catalog(env.store)
        except Exception as e:  # noqa: BLE001
            fail("cannot read the store's catalog: %s" % e)
    return env.cache["catalog"]


def load_vectors(env, name):
    cat, spaces, space_rows = main_catalog(env)
    info = spaces[name]
    path = os.path.join(generation(env.store), "spaces", name, "vectors.f32")
    raw = np.fromfile(path, dtype=np.float32)
    return raw, info


# ---------------------------------------------------------------- setup


def setup(env):
    shutil.rmtree(env.work, ignore_errors=True)
    os.makedirs(env.work)
    env.manifest = lf.write_layout_tree(env.root)
    m = env.manifest
    files = {(f["dataset"], f["subset"], f["healpix_folder"], os.path.basename(f["path"])): f["path"]
             for f in m["files"]}
    good = [files[("legacysurvey", "dr10_south_21", 1113, lf.FILE)], files[("hsc", "pdr3_dud_22.5", 1175, lf.FILE)],
            files[("desi", "edr_sv3", 626, lf.FILE)], files[("sdss", "sdss", 583, lf.FILE)],
            files[("gaia", "gaia", lf.GAIA_CELL, lf.FILE)],
            files[("plasticc", "data", lf.PLASTICC_CELL, "train_01.hdf5")]]
    bad_sources = {
        "truncated": (files[("hsc", "pdr3_dud_22.5", 1106, lf.FILE)],
                      lambda src, dst: lf.truncated_copy(src, dst, 0.6)),
        "garbage header": (files[("desi", "edr_sv3", 1113, lf.FILE)],
                           lambda src, dst: lf.garbage_copy(src, dst, "spectrum_flux")),
    }
    for kind, (src, corrupt) in bad_sources.items():
        root = os.path.join(env.work, "bad-" + kind.replace(" ", "-"))
        for g in good:
            dst = os.path.join(root, os.path.relpath(g, env.root))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(g, dst)
        bad = corrupt(src, os.path.join(root, os.path.relpath(src, env.root)))
        good_objects = {(o["survey"], o["object_id"]) for o in m["objects"] if o["path"] in good}
        env.bad[kind] = dict(root=root, file=bad, rel=os.path.relpath(bad, root), good_objects=good_objects,
                             n_files=len(good) + 1,
                             store=os.path.join(env.work, "store-bad-" + kind.replace(" ", "-")))
    env.build = env.index("build", env.root, "--store", env.store, "--quiet", timeout=BUILD_TIMEOUT_S)


# ---------------------------------------------------------------- check groups


def case_fixtures(env):
    """The fixtures are what the brief asks for (a self-check of layout_fixtures.py)."""
    pr = Problems()
    m = env.manifest
    truth = read_truth(env.root)
    pr.check(len(truth) == len(m["objects"]), "h5py read %d objects, manifest %d" % (len(truth), len(m["objects"])))
    for o in m["objects"]:
        t = truth.get((o["survey"], o["object_id"]))
        if not pr.check(t is not None, "%s/%s not read back" % (o["survey"], o["object_id"])):
            continue
        pr.check(t["ra"] == o["ra"] and t["dec"] == o["dec"] and t["subset"] == o["subset"]
                 and same_path(t["path"], o["path"]) and t["index"] == o["index"],
                 "%s/%s: manifest disagrees with the file" % (o["survey"], o["object_id"]))
        cell = int(lf.ang2pix_nest(16, t["ra"], t["dec"]))
        pr.check(cell == t["cell"] == o["healpix"] == o["cell"],
                 "%s/%s: NESTED cell %d, folder %d, manifest %d" % (o["survey"], o["object_id"], cell, t["cell"],
                                                                 o["healpix"]))
        if t["healpix"] is not None:
            pr.check(t["healpix"] == cell, "%s/%s: stored healpix %d != NESTED %d" % (o["survey"], o["object_id"],
                                                                                    t["healpix"], cell))
        else:
            pr.check(o["survey"] == "plasticc", "%s/%s has no stored healpix" % (o["survey"], o["object_id"]))
    pos = [(o["ra"], o["dec"], o["survey"], o["object_id"]) for o in m["objects"]]
    close = []
    for i in range(len(pos)):
        for j in range(i + 1, len(pos)):
            if abs(pos[i][1] - pos[j][1]) < 0.01 and lf.sep_arcsec(pos[i][0], pos[i][1], pos[j][0], pos[j][1]) < 1.0:
                close.append(((pos[i][2], pos[i][3]), (pos[j][2], pos[j][3])))
    pairs = [(a, b) for a, b, _ in m["pairs"]]
    pr.check(sorted(close) == sorted(pairs), "positions closer than 1\": %s, expected only %s" % (close, pairs))
    pr.check(len(pairs) >= 2 and all(s < 0.5 for _, _, s in m["pairs"]), "cross-match pairs: %s" % m["pairs"])
    for space, members in SPACES.items():
        n = sum(1 for o in m["objects"] if o["survey"] in members)
        pr.check(n >= 3, "only %d objects for space %s" % (n, space))
    for f in m["files"]:
        with h5py.File(f["path"], "r") as h:
            for name, (dtype, shape, comp, _) in f["keys"].items():
                d = h[name]
                pr.check(list(d.shape) == shape and d.compression == comp,
                         "%s:%s shape %s comp %s" % (f["path"], name, d.shape, d.compression))
    pr.done()


def case_build(env):
    r = env.build
    expect_rc(r, 0, "build of the fixture tree")
    if not os.path.isfile(os.path.join(env.store, "CURRENT")):
        fail("no CURRENT in the store after the build")


def case_catalog_objects(env):
    """Every fixture object exactly once, keyed by (survey = dataset folder, canonical id)."""
    cat, _, _ = main_catalog(env)
    pr = Problems()
    expected = {(o["survey"], o["object_id"]) for o in env.manifest["objects"]}
    got = [(c["survey"], c["object_id"]) for c in cat]
    dup = sorted({k for k in got if got.count(k) > 1})
    pr.check(not dup, "objects more than once: %s" % dup)
    missing = sorted(expected - set(got))
    extra = sorted(set(got) - expected)
    pr.check(not missing, "missing from the catalog (%d): %s" % (len(missing), missing))
    pr.check(not extra, "in the catalog but not in the files (%d): %s" % (len(extra), extra))
    pr.check(len(cat) == len(expected), "catalog has %d objects, the fixtures %d" % (len(cat), len(expected)))
    pr.done()


def _catalog_by_key(env):
    cat, _, _ = main_catalog(env)
    return {(c["survey"], c["object_id"]): c for c in cat}


def case_catalog_fields(env):
    """subset, ra/dec (float32 sources at float32 precision), healpix, folder cell, file, row."""
    by = _catalog_by_key(env)
    pr = Problems()
    for o in env.manifest["objects"]:
        key = (o["survey"], o["object_id"])
        c = by.get(key)
        if c is None:
            continue  # reported by 'catalog: every object once'
        tag = "%s/%s" % key
        pr.check(c["subset"] == o["subset"], "%s: subset %r, expected %r" % (tag, c["subset"], o["subset"]))
        if o["radec_f32"]:
            ok = np.float32(c["ra"]) == np.float32(o["ra"]) and np.float32(c["dec"]) == np.float32(o["dec"])
        else:
            ok = abs(c["ra"] - o["ra"]) <= 1e-9 and abs(c["dec"] - o["dec"]) <= 1e-9
        pr.check(ok, "%s: ra/dec %r,%r, file has %r,%r" % (tag, c["ra"], c["dec"], o["ra"], o["dec"]))
        pr.check(c["healpix"] == o["healpix"], "%s: healpix %s, expected %d" % (tag, c["healpix"], o["healpix"]))
        pr.check(c["file_healpix"] == o["cell"], "%s: files.healpix %s, folder cell %d" % (tag, c["file_healpix"],
                                                                                       o["cell"]))
        pr.check(c["hpx_fine"] is not None and c["hpx_fine"] >> 50 == o["healpix"],
                 "%s: hpx_fine %s not inside cell %d" % (tag, c["hpx_fine"], o["healpix"]))
        fp = c["file_path"] or ""
        pr.check(same_path(fp, o["path"]) or same_path(os.path.join(env.root, fp), o["path"]),
                 "%s: file %r, expected %s" % (tag, fp, o["path"]))
        if o["layout"] == "row table":
            pr.check(c["index_in_file"] == o["index"], "%s: index_in_file %s, row %d in the file" %
                     (tag, c["index_in_file"], o["index"]))
    pr.done()


def case_catalog_modality(env):
    by = _catalog_by_key(env)
    pr = Problems()
    for o in env.manifest["objects"]:
        c = by.get((o["survey"], o["object_id"]))
        if c is not None:
            pr.check(c["modality"] == o["modality"], "%s/%s: modality %r, expected %r" %
                     (o["survey"], o["object_id"], c["modality"], o["modality"]))
    pr.done()


def make_space_case(space):
    members = SPACES[space]

    def case(env):
        cat, spaces, space_rows = main_catalog(env)
        pr = Problems()
        if space not in spaces:
            fail("no space %r in the store (spaces: %s)" % (space, sorted(spaces)))
        info = spaces[space]
        pr.check(info["modality"] == space, "spaces.modality %r" % info["modality"])
        by_row = {c["row"]: c for c in cat}
        rows = space_rows.get(space, [])
        got = [(by_row[r]["survey"], by_row[r]["object_id"]) if r in by_row else ("?", "row %d" % r) for _, r in rows]
        expected = {(o["survey"], o["object_id"]) for o in env.manifest["objects"] if o["survey"] in members}
        missing = sorted(expected - set(got))
        extra = sorted(set(got) - expected)
        pr.check(not missing, "objects without a vector (%d): %s" % (len(missing), missing))
        pr.check(not extra, "vectors of other objects (%d): %s" % (len(extra), extra))
        pr.check(len(got) == len(set(got)), "an object has several vectors")
        pr.check([v for v, _ in rows] == list(range(len(rows))), "vrows are not 0..count-1")
        pr.check(info["count"] == len(expected) == len(rows),
                 "spaces.count %d, space_rows %d, objects %d" % (info["count"], len(rows), len(expected)))
        raw, _ = load_vectors(env, space)
        dim, count = info["dim"], info["count"]
        if pr.check(dim >= 1 and raw.size == dim * count,
                    "vectors.f32 holds %d floats, count x dim = %d x %d" % (raw.size, count, dim)):
            v = raw.reshape(count, dim).astype(np.float64)
            pr.check(np.all(np.isfinite(v)), "non-finite values in vectors.f32")
            norms = np.linalg.norm(v, axis=1)
            pr.check(np.all(np.abs(norms - 1) < 1e-4), "rows not L2-normalised: norms %s" % np.round(norms, 5))
            if count >= 2:
                d = np.max(np.abs(v[:, None, :] - v[None, :, :]), axis=2) + np.eye(count)
                pr.check(d.min() > 1e-6, "two different objects have identical vectors")
        pr.done()
    return case


def case_no_vector_provabgs(env):
    cat, spaces, space_rows = main_catalog(env)
    rows = {c["row"] for c in cat if c["survey"] == "desi_provabgs"}
    inspace = sorted({s for s, rs in space_rows.items() for _, r in rs if r in rows})
    if inspace:
        fail("desi_provabgs objects have vectors in %s" % inspace)
    extra = sorted(set(spaces) - set(SPACES))
    if extra:
        fail("unexpected spaces %s (expected exactly %s)" % (extra, sorted(SPACES)))


def make_like_case(survey):
    space = next(s for s, members in SPACES.items() if survey in members)

    def case(env):
        cat, spaces, space_rows = main_catalog(env)
        objs = [o for o in env.manifest["objects"] if o["survey"] == survey]
        q = objs[-1] if survey == "sdss" else objs[0]
        r = env.search("--store", env.store, "--like", q["object_id"], "--survey", survey, "--k", "3",
                       "--format", "json")
        expect_rc(r, 0, "--like %s" % q["object_id"])
        js = parse_json(r, "--like")
        pr = Problems()
        pr.check(js.get("space") == space, "space %r, expected %r" % (js.get("space"), space))
        qq = js.get("query", {})
        pr.check(qq.get("object_id") == q["object_id"] and qq.get("survey") == survey, "query echoed as %s" % qq)
        res = js.get("results")
        if not isinstance(res, list):
            fail("no results list: %s" % r.describe())
        members = {(o["survey"], o["object_id"]) for o in env.manifest["objects"] if o["survey"] in SPACES[space]}
        want = min(3, len(members) - 1)
        pr.check(len(res) == want, "%d results, expected %d" % (len(res), want))
        for i, g in enumerate(res):
            key = (g.get("survey"), g.get("object_id"))
            pr.check(key in members, "result %s is not in space %s" % (key, space))
            pr.check(key != (survey, q["object_id"]), "the query object is in its own results")
            pr.check(g.get("rank") == i + 1, "rank field %s at position %d" % (g.get("rank"), i + 1))
        # The answer is the brute-force cosine top-k over the stored vectors.
        if space in spaces:
            raw, info = load_vectors(env, space)
            by_row = {c["row"]: (c["survey"], c["object_id"]) for c in cat}
            vrows = [by_row.get(rw) for _, rw in space_rows.get(space, [])]
            consistent = raw.size == info["dim"] * info["count"] == info["dim"] * len(vrows)
            if consistent and (survey, q["object_id"]) in vrows:
                v = raw.reshape(info["count"], info["dim"]).astype(np.float64)
                qi = vrows.index((survey, q["object_id"]))
                sc = v @ v[qi]
                order = [i for i in np.argsort(-sc, kind="stable") if i != qi][:want]
                for i, g in zip(order, res):
                    pr.check(abs(sc[i] - g.get("score", np.nan)) <= 1e-4,
                             "score %s, brute force %s for %s" % (g.get("score"), sc[i], vrows[i]))
        pr.done()
    return case


def case_like_in_survey(env):
    """--in restricts results to a survey: an hsc image's nearest legacysurvey
    images, equal to brute force over the legacysurvey rows only."""
    q = next(o for o in env.manifest["objects"] if o["survey"] == "hsc")
    r = env.search("--store", env.store, "--like", q["object_id"], "--survey", "hsc", "--in", "legacysurvey",
                   "--k", "50", "--format", "json")
    expect_rc(r, 0, "--like --in")
    js = parse_json(r, "--like --in")
    cat, spaces, space_rows = main_catalog(env)
    raw, info = load_vectors(env, "image")
    v = raw.reshape(info["count"], info["dim"]).astype(np.float64)
    by_row = {c["row"]: (c["survey"], c["object_id"]) for c in cat}
    keys = [by_row[rw] for _, rw in space_rows["image"]]
    sc = v @ v[keys.index(("hsc", q["object_id"]))]
    want = sorted((i for i, k in enumerate(keys) if k[0] == "legacysurvey"), key=lambda i: -sc[i])
    pr = Problems()
    got = js.get("results", [])
    pr.check([g["object_id"] for g in got] == [keys[i][1] for i in want], "ids %s vs brute force %s" %
             ([g["object_id"] for g in got], [keys[i][1] for i in want]))
    pr.check(all(abs(g["score"] - sc[i]) <= 1e-5 for g, i in zip(got, want)), "scores differ from brute force")
    pr.check("5 objects" in r.err or str(len(want)) in r.err, "no note that fewer than k exist: %r" % r.err)
    r = env.search("--store", env.store, "--like", q["object_id"], "--survey", "hsc", "--in", "gaia")
    pr.check(r.rc == 1 and "gaia" in r.err, "--in a survey without image vectors: %s" % r.describe())
    pr.done()


def case_like_provabgs(env):
    main_catalog(env)
    o = next(o for o in env.manifest["objects"] if o["survey"] == "desi_provabgs")
    r = env.search("--store", env.store, "--like", o["object_id"], "--survey", "desi_provabgs", "--k", "3",
                   "--format", "json")
    expect_rc(r, 1, "--like on a catalog-only object")
    if "no embedding" not in r.err + r.out:
        fail("message does not say 'no embedding': %s" % r.describe())


# ---- inspect


def inspect_entries(env):
    if "inspect" not in env.cache:
        r = env.index("inspect", env.root, "--format", "json", timeout=BUILD_TIMEOUT_S)
        env.cache["inspect"] = r
    r = env.cache["inspect"]
    expect_rc(r, 0, "inspect of the fixture tree")
    js = parse_json(r, "inspect")
    if not isinstance(js, list):
        fail("inspect JSON is not a list")
    return js


def case_inspect_files(env):
    js = inspect_entries(env)
    pr = Problems()
    paths = [e.get("path", "") for e in js]
    for f in env.manifest["files"]:
        n = sum(1 for p in paths if same_path(p, f["path"]))
        pr.check(n == 1, "%s listed %d times" % (f["path"], n))
    pr.check(len(js) == len(env.manifest["files"]), "%d entries for %d files" % (len(js), len(env.manifest["files"])))
    fields = ("path", "dataset", "subset", "healpix_folder", "layout", "modality", "objects", "cells", "error", "keys")
    for e in js:
        miss = [k for k in fields if k not in e]
        pr.check(not miss, "%s: fields %s missing" % (e.get("path"), miss))
        for k in e.get("keys") or []:
            miss = [x for x in ("name", "dtype", "shape", "compression", "role") if x not in k]
            pr.check(not miss, "%s: key %s lacks %s" % (e.get("path"), k.get("name"), miss))
    pr.done()


def make_inspect_case(dataset):
    def case(env):
        js = inspect_entries(env)
        pr = Problems()
        for f in [f for f in env.manifest["files"] if f["dataset"] == dataset]:
            e = next((e for e in js if same_path(e.get("path", ""), f["path"])), None)
            rel = os.path.relpath(f["path"], env.root)
            if not pr.check(e is not None, "%s not listed" % rel):
                continue
            for field in ("dataset", "subset", "healpix_folder", "layout", "modality", "objects", "cells"):
                got = e.get(field)
                if field == "cells" and isinstance(got, list):
                    got = sorted(got)
                pr.check(got == f[field], "%s: %s = %r, expected %r" % (rel, field, got, f[field]))
            pr.check(e.get("error") is None, "%s: error %r" % (rel, e.get("error")))
            keys = {k.get("name"): k for k in e.get("keys") or [] if isinstance(k, dict)}
            for name, (dtype, shape, comp, role) in f["keys"].items():
                k = keys.get(name)
                if not pr.check(k is not None, "%s: key %s not listed" % (rel, name)):
                    continue
                pr.check(k.get("dtype") == dtype, "%s:%s dtype %r, expected %r" % (rel, name, k.get("dtype"), dtype))
                pr.check(k.get("shape") == shape, "%s:%s shape %r, expected %r" % (rel, name, k.get("shape"), shape))
                pr.check(k.get("compression") == comp,
                         "%s:%s compression %r, expected %r" % (rel, name, k.get("compression"), comp))
                if role == "not healpix":
                    pr.check(k.get("role") != "healpix", "%s:%s (DESI's own) has role 'healpix'" % (rel, name))
                elif role is not None:
                    pr.check(k.get("role") == role, "%s:%s role %r, expected %r" % (rel, name, k.get("role"), role))
            ids = [k for k in keys.values() if k.get("role") == "object_id"]
            if f["layout"] != "groups per object":
                pr.check(len(ids) == 1, "%s: %d keys with role object_id" % (rel, len(ids)))
        pr.done()
    return case


# ---- corrupted files


def make_bad_inspect_file_case(kind):
    def case(env):
        b = env.bad[kind]
        r = env.index("inspect", b["file"], "--format", "json")
        expect_rc(r, 1, "inspect of the %s file" % kind)
        js = parse_json(r, "inspect")
        e = next((e for e in js if same_path(e.get("path", ""), b["file"])), None) if isinstance(js, list) else None
        if e is None:
            fail("no entry for %s: %s" % (b["file"], r.describe()))
        if not isinstance(e.get("error"), str) or not e["error"].strip():
            fail("entry's error is %r" % e.get("error"))
    return case


def make_bad_inspect_root_case(kind):
    def case(env):
        b = env.bad[kind]
        r = env.index("inspect", b["root"], "--format", "json")
        expect_rc(r, 1, "inspect of a root holding the %s file" % kind)
        js = parse_json(r, "inspect")
        pr = Problems()
        if not isinstance(js, list):
            fail("not a JSON list")
        for e in js:
            bad = same_path(e.get("path", ""), b["file"])
            err = e.get("error")
            if bad:
                pr.check(isinstance(err, str) and err.strip(), "bad file's error is %r" % err)
            else:
                pr.check(err is None, "good file %s has error %r" % (e.get("path"), err))
        pr.check(any(same_path(e.get("path", ""), b["file"]) for e in js), "bad file not listed")
        pr.check(len(js) == b["n_files"], "%d entries for %d files" % (len(js), b["n_files"]))
        pr.done()
    return case


def names_file(text, b):
    return b["file"] in text or b["rel"] in text or os.path.realpath(b["file"]) in text


def make_bad_build_case(kind):
    def case(env):
        b = env.bad[kind]
        store = b["store"] + "-strict"
        r = env.index("build", b["root"], "--store", store, "--quiet", timeout=BUILD_TIMEOUT_S)
        expect_rc(r, 1, "build of a root holding the %s file" % kind)
        if not names_file(r.err, b):
            fail("stderr does not name %s: %s" % (b["rel"], r.describe()))
        if os.path.exists(os.path.join(store, "CURRENT")):
            fail("a failed build left a CURRENT generation in %s" % store)
    return case


def make_bad_skip_case(kind):
    def case(env):
        b = env.bad[kind]
        store = b["store"] + "-skip"
        r = env.index("build", b["root"], "--store", store, "--quiet", "--skip-bad", timeout=BUILD_TIMEOUT_S)
        expect_rc(r, 0, "build --skip-bad")
        pr = Problems()
        pr.check(names_file(r.out + r.err, b), "output does not name the skipped %s: %s" % (b["rel"], r.describe()))
        cat, spaces, _ = catalog(store)
        got = {(c["survey"], c["object_id"]) for c in cat}
        missing = sorted(b["good_objects"] - got)
        extra = sorted(got - b["good_objects"])
        pr.check(not missing, "good objects not ingested: %s" % missing)
        pr.check(not extra, "unexpected objects: %s" % extra)
        pr.check(len(cat) == len(b["good_objects"]), "%d rows for %d objects" % (len(cat), len(b["good_objects"])))
        pr.done()
    return case


CASES = [("fixtures: layouts, cells, positions", case_fixtures),
         ("build: whole fixture tree exits 0", case_build),
         ("catalog: every object exactly once", case_catalog_objects),
         ("catalog: subset, ra/dec, healpix, folder cell, file", case_catalog_fields),
         ("catalog: modality per survey", case_catalog_modality)]
CASES += [("space %s (%s)" % (s, " + ".join(m)), make_space_case(s)) for s, m in SPACES.items()]
CASES += [("desi_provabgs: catalogued, no vector, no extra space", case_no_vector_provabgs)]
CASES += [("--like %s" % s, make_like_case(s)) for s in EMBEDDED]
CASES += [("--like desi_provabgs: exit 1, no embedding", case_like_provabgs)]
CASES += [("--like --in legacysurvey from an hsc object", case_like_in_survey)]
CASES += [("inspect: one entry per file, all fields", case_inspect_files)]
CASES += [("inspect %s" % d, make_inspect_case(d)) for d in ("legacysurvey", "hsc", "desi", "sdss", "gaia",
                                                            "plasticc", "cfa", "csp", "manga", "desi_provabgs")]
for _kind in ("truncated", "garbage header"):
    CASES += [("%s file: inspect FILE exits 1, entry has error" % _kind, make_bad_inspect_file_case(_kind)),
              ("%s file: inspect ROOT exits 1, only its entry has error" % _kind, make_bad_inspect_root_case(_kind)),
              ("%s file: build exits 1 naming it" % _kind, make_bad_build_case(_kind)),
              ("%s file: build --skip-bad ingests the rest, names it" % _kind, make_bad_skip_case(_kind))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="folder holding mmu-index and mmu-search")
    ap.add_argument("--tmp", required=True, help="scratch folder (a layouts/ subfolder is replaced)")
    ap.add_argument("-k", dest="only", default=None, help="run only groups whose name contains this")
    args = ap.parse_args()
    env = Env(args.bin, args.tmp)
    return run_cases(CASES, env, setup, args.only)


if __name__ == "__main__":
    sys.exit(main())
