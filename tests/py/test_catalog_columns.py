"""End-to-end check of the catalog columns `mmu-index build` keeps for --where:
after building data/samples, object_values holds, for every object, exactly the
per-object scalar columns h5py reads from its file (numbers exact, strings
trimmed), and nothing for arrays or the id/ra/dec/healpix roles.
Run: test_catalog_columns.py --bin BUILD --samples DIR --tmp DIR
"""
import math
import os
import sqlite3
import subprocess
import sys

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, binaries_samples_tmp  # noqa: E402

CHECKS = Checks()
check = CHECKS.check
ROLES = {"object_id", "ra", "dec", "healpix"}


def expected_values(path):
    """{name: [value or None per file row]} of the file's scalar columns, by h5py."""
    out = {}
    with h5py.File(path, "r") as f:
        n = len(f["object_id"])
        for name, d in f.items():
            if name in ROLES or not isinstance(d, h5py.Dataset) or d.shape != (n,):
                continue
            v = d[()]
            if v.dtype.kind == "S":
                out[name] = [x.rstrip(b"\0 ").decode() for x in v]
            elif v.dtype.kind == "f":
                out[name] = [None if math.isnan(x) else float(x) for x in v]
            elif v.dtype.kind in "iub":
                out[name] = [int(x) for x in v]
    return out


def main():
    a, index, _ = binaries_samples_tmp()
    store = os.path.join(a.tmp, "store")
    p = subprocess.run([index, "build", a.samples, "--store", store], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"build failed ({p.returncode}): {p.stderr}")
    with open(os.path.join(store, "CURRENT")) as f:
        db = sqlite3.connect(os.path.join(store, f.read().strip(), "catalog.sqlite"))
    check(db.execute("PRAGMA user_version").fetchone()[0] == 2, "format version 2")
    stored = {}
    for row, name, num, txt in db.execute("SELECT row, name, num, txt FROM object_values"):
        check((num is None) != (txt is None), f"row {row} {name}: exactly one of num/txt")
        stored[(row, name)] = num if txt is None else txt
    objects = db.execute(
        "SELECT o.row, o.object_id, o.index_in_file, f.path FROM objects o JOIN files f ON f.id = o.file_id").fetchall()
    check(len(objects) > 0, "the samples give objects")
    by_file = {}
    for row, oid, i, path in objects:
        by_file.setdefault(path, []).append((row, oid, i))
    want = {}
    for path, objs in by_file.items():
        cols = expected_values(path)
        for row, oid, i in objs:
            for name, values in cols.items():
                if values[i] is not None:
                    want[(row, name)] = values[i]
    check(set(stored) == set(want),
          f"the same (row, column) pairs: {len(set(stored) - set(want))} extra, {len(set(want) - set(stored))} missing")
    bad = [(k, stored[k], v) for k, v in want.items() if k in stored and stored[k] != v]
    check(not bad, f"values equal h5py's: {bad[:5]}")
    # The columns the brief names are there, typed as in the files.
    names = {n: (nums, texts) for n, nums, texts in db.execute("SELECT name, numbers, texts FROM value_columns")}
    for n in ("Z", "ZERR", "ZWARN", "TARGETID", "FLUX_G", "EBV"):
        check(n in names and names[n][0] > 0 and names[n][1] == 0, f"{n} stored as numbers")
    for n in ("SPECTYPE", "TYPE"):
        check(n in names and names[n][1] > 0 and names[n][0] == 0, f"{n} stored as text")
    for n in ROLES | {"spectrum_flux", "image_array", "image_band"}:
        check(n not in names, f"{n} is not a catalog column")
    counts = dict(db.execute("SELECT name, count(*) FROM object_values GROUP BY name").fetchall())
    check(all(counts[n] == names[n][0] + names[n][1] for n in names), "value_columns counts match object_values")
    # Every DESI object has its redshift, error and class.
    desi_rows = {row for row, _, _, path in objects if "/desi/" in path}
    check(len(desi_rows) > 0, "the samples hold DESI objects")
    for n in ("Z", "ZERR", "SPECTYPE"):
        check(all((r, n) in stored for r in desi_rows), f"every DESI object has {n}")
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
