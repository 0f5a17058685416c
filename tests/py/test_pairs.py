"""`mmu-index pairs` against an independent numpy haversine brute force: the
same pairs (nearest and --all, across files and cells), every source dataset's
row copied bit for bit, each pair in its left object's cell, the pairs of the
sample surveys equal to `mmu-index xmatch`'s, a SIGKILLed run resuming to the
same output, `mmu-index build` reading the output, and bad input named.
Run: test_pairs.py --bin BUILD --samples DIR --tmp DIR
"""
import csv
import io
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, binaries_samples_tmp  # noqa: E402
import mmu_fixtures as mf  # noqa: E402

CHECKS = Checks()
check = CHECKS.check
ARCSEC = 1 / 3600


def run(cmd, ok=True, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    if ok and p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p


def text_id(raw):
    return raw.decode().rstrip("\0").strip() if isinstance(raw, bytes) else str(int(raw))


def offset(ra, dec, arcsec, pa):
    d = arcsec * ARCSEC
    return ra + d * np.sin(pa) / np.cos(np.radians(dec)), dec + d * np.cos(pa)


def make_fixture(root):
    """Images in two cells; spectra in two files, each holding matches of both
    cells' images: one, two (nearest != all), none, a near miss, a spectrum
    shared by two images."""
    rng = np.random.default_rng(19)
    left = {mf.CELL: mf.image_datasets(8, seed=3, box=mf.CELL_BOX, cell=mf.CELL),
            mf.OTHER_CELL: mf.image_datasets(6, seed=4, ids=mf.image_ids(6, prefix="LO"), box=mf.OTHER_CELL_BOX,
                                             cell=mf.OTHER_CELL)}
    d = left[mf.CELL]
    d["ra"][5], d["dec"][5] = offset(d["ra"][4], d["dec"][4], 0.8, 0.3)
    right_pos = [[], []]
    k = 0
    for cell in (mf.CELL, mf.OTHER_CELL):
        for ra, dec in zip(left[cell]["ra"], left[cell]["dec"]):
            kind = k % 4
            seps = {0: [0.5], 1: [0.3, 0.8], 2: [1.5], 3: [0.9]}[kind]
            for s in seps:
                right_pos[k % 2].append(offset(ra, dec, s, rng.uniform(0, 2 * np.pi)))
            k += 1
    right_pos[0].append(offset(d["ra"][4], d["dec"][4], 0.4, 0.3))  # between images 4 and 5
    for cell, ds in left.items():
        mf.write_mmu_file(mf.mmu_path(os.path.join(root, "left"), mf.IMAGE_SURVEY, cell), ds)
    base = 39627000000000000
    for j, (cell, pos) in enumerate(zip((mf.CELL, mf.OTHER_CELL), right_pos)):
        n = len(pos)
        ds = mf.spectrum_datasets(n, seed=5 + j, ids=mf.spectrum_ids(n, base=base + 1000 * j), length=500)
        ds["ra"] = np.array([p[0] for p in pos])
        ds["dec"] = np.array([p[1] for p in pos])
        mf.write_mmu_file(mf.mmu_path(os.path.join(root, "right"), mf.SPECTRUM_SURVEY, cell), ds)
    return os.path.join(root, "left"), os.path.join(root, "right")


def source_rows(root):
    """{text id: (path, row)}, ids in order, ra, dec (degrees) of every file under root."""
    where, ids, ra, dec = {}, [], [], []
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            with h5py.File(path, "r") as f:
                for row, raw in enumerate(f["object_id"][:]):
                    where[text_id(raw)] = (path, row)
                    ids.append(text_id(raw))
                ra.extend(f["ra"][:].astype(float))
                dec.extend(f["dec"][:].astype(float))
    return where, ids, np.array(ra), np.array(dec)


def haversine_arcsec(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.minimum(1, h)))) * 3600


def brute_force(left, right, radius_arcsec, all_pairs):
    """{(left id, right id): separation}."""
    _, lid, lra, ldec = left
    _, rid, rra, rdec = right
    sep = haversine_arcsec(lra[:, None], ldec[:, None], rra[None, :], rdec[None, :])
    out = {}
    for i in range(len(lid)):
        js = np.nonzero(sep[i] <= radius_arcsec)[0]
        if len(js) and not all_pairs:
            js = [min(js, key=lambda j: (sep[i, j], j))]
        for j in js:
            out[(lid[i], rid[j])] = sep[i, j]
    return out


def read_output(dataset_dir):
    """{relative file: {dataset: array}} of every cell file."""
    out = {}
    for dirpath, _, files in sorted(os.walk(dataset_dir)):
        for name in sorted(files):
            if name.endswith(".hdf5"):
                with h5py.File(os.path.join(dirpath, name), "r") as f:
                    out[os.path.relpath(os.path.join(dirpath, name), dataset_dir)] = {k: f[k][()] for k in f}
    return out


def same_output(a, b):
    return a.keys() == b.keys() and all(
        a[f].keys() == b[f].keys() and all(a[f][k].dtype == b[f][k].dtype and a[f][k].tobytes() == b[f][k].tobytes()
                                           for k in a[f]) for f in a)


def check_pairs(out, left, right, radius, all_pairs, label):
    """Pairs equal to the brute force; every source row bit-equal; each in its left object's cell."""
    expect = brute_force(left, right, radius, all_pairs)
    got, bit_equal, cells_ok, names_ok = {}, True, True, True
    for rel, ds in out.items():
        cell = int(rel.split("/")[0].split("=")[1])
        for k in range(len(ds["object_id"])):
            lid, rid = text_id(ds["left_object_id"][k]), text_id(ds["right_object_id"][k])
            got[(lid, rid)] = ds["separation_arcsec"][k]
            names_ok &= text_id(ds["object_id"][k]) == f"{lid}:{rid}"
            cells_ok &= int(ds["healpix"][k]) == cell
            lpath, lrow = left[0][lid]
            rpath, rrow = right[0][rid]
            cells_ok &= f"healpix={cell}" in lpath  # fixture images lie in their file's cell
            used = {"object_id", "healpix", "separation_arcsec"}
            with h5py.File(lpath, "r") as lf, h5py.File(rpath, "r") as rf:
                left_names = {"object_id": "left_object_id"}
                for name in lf:
                    if name == "healpix":
                        continue
                    o = left_names.get(name, name)
                    used.add(o)
                    bit_equal &= ds[o].dtype == lf[name].dtype and ds[o][k].tobytes() == lf[name][lrow].tobytes()
                taken = set(used)
                for name in rf:
                    if name == "healpix":
                        continue
                    o = {"object_id": "right_object_id", "ra": "right_ra", "dec": "right_dec"}.get(name)
                    o = o or ("right_" + name if name in taken else name)
                    used.add(o)
                    bit_equal &= ds[o].dtype == rf[name].dtype and ds[o][k].tobytes() == rf[name][rrow].tobytes()
                if "image_band" not in lf:  # bands named from the survey: written for the reader
                    used.add("image_band")
                    names_ok &= ds["image_band"].shape == (len(ds["object_id"]), lf["image_array"].shape[1])
            names_ok &= used == set(ds)
    check(got.keys() == expect.keys(), f"{label}: {len(got)} pairs, brute force {len(expect)}: "
                                       f"extra {sorted(set(got) - set(expect))[:3]} missing {sorted(set(expect) - set(got))[:3]}")
    check(all(abs(got[p] - expect[p]) < 1e-6 for p in got.keys() & expect.keys()), f"{label}: separations")
    check(bit_equal, f"{label}: every source dataset's row copied bit for bit, in its own type")
    check(cells_ok, f"{label}: each pair in its left object's cell, healpix column = its folder")
    check(names_ok, f"{label}: object_id = LEFT:RIGHT, no dataset unaccounted for")
    return got


def main():
    a, index, _ = binaries_samples_tmp()
    lroot, rroot = make_fixture(a.tmp)
    left, right = source_rows(lroot), source_rows(rroot)

    outputs = {}
    for all_pairs in (False, True):
        mode = "all" if all_pairs else "nearest"
        out = os.path.join(a.tmp, "out-" + mode)
        p = run([index, "pairs", "--left", lroot, "--right", rroot, "--radius", "1arcsec", "--out", out]
                + (["--all"] if all_pairs else []))
        outputs[mode] = read_output(os.path.join(out, "legacysurvey_x_desi"))
        got = check_pairs(outputs[mode], left, right, 1.0, all_pairs, "fixture " + mode)
        check(len(outputs[mode]) == 2, f"{mode}: two cells written, got {sorted(outputs[mode])}")
        check(f"{len(got)} pairs" in p.stderr, f"{mode}: summary counts the pairs: {p.stderr.strip()}")
    check(len(outputs["all"]) and sum(len(d["object_id"]) for d in outputs["all"].values()) >
          sum(len(d["object_id"]) for d in outputs["nearest"].values()), "--all finds more pairs than nearest")

    # Killed halfway through its second cell, a run leaves one whole cell and a
    # partial file; the rerun keeps the first and ends with the same output.
    out = os.path.join(a.tmp, "killed")
    env = dict(os.environ, MMU_PAIRS_TEST_KILL_IN_CELL="1")
    cmd = [index, "pairs", "--left", lroot, "--right", rroot, "--radius", "1arcsec", "--out", out, "--all"]
    p = run(cmd, ok=False, env=env)
    check(p.returncode == -9, f"test hook killed the run (rc {p.returncode})")
    dataset_dir = os.path.join(out, "legacysurvey_x_desi")
    files = sorted(os.path.relpath(os.path.join(d, n), dataset_dir) for d, _, fs in os.walk(dataset_dir) for n in fs)
    check(len([f for f in files if f.endswith(".hdf5")]) == 1 and len([f for f in files if f.endswith(".partial")]) == 1,
          f"killed run left one whole cell and one partial file: {files}")
    p = run(cmd)
    check("1 complete from an earlier run kept" in p.stderr, f"rerun keeps the whole cell: {p.stderr.strip()}")
    check(same_output(read_output(dataset_dir), outputs["all"]), "killed and resumed run = uninterrupted run")
    check(not any(n.endswith(".partial") for _, _, fs in os.walk(dataset_dir) for n in fs), "no partial file left")
    # The fixture's images have no image_band (their survey names the bands):
    # the pairs must still be readable as images under their own name.
    store = os.path.join(a.tmp, "store")
    p = run([index, "build", out, "--store", store, "--quiet"], ok=False)
    check(p.returncode == 0 and os.path.isfile(os.path.join(store, "CURRENT")),
          f"mmu-index build reads the pairs dataset: {p.stderr.strip()[:300]}")

    # The sample surveys: the same pairs as `mmu-index xmatch`, in both modes.
    sl, sr = os.path.join(a.samples, "legacysurvey"), os.path.join(a.samples, "desi")
    sleft, sright = source_rows(sl), source_rows(sr)
    for extra in ([], ["--all"]):
        out = os.path.join(a.tmp, "samples" + "".join(extra))
        run([index, "pairs", "--left", sl, "--right", sr, "--radius", "1arcsec", "--out", out, "--quiet"] + extra)
        got = check_pairs(read_output(os.path.join(out, "legacysurvey_x_desi")), sleft, sright, 1.0, bool(extra),
                          "samples " + (extra[0] if extra else "nearest"))
        x = run([index, "xmatch", "--left", sl, "--right", sr, "--radius", "1arcsec", "--format", "csv"] + extra)
        rows = {(r["left_id"], r["right_id"]): r["sep_arcsec"] for r in csv.DictReader(io.StringIO(x.stdout))}
        check({p: "%.6f" % s for p, s in got.items()} == rows and len(rows) > 0,
              f"samples {extra}: pairs = xmatch's ({len(got)} vs {len(rows)})")

    # Bad input: a non-zero exit and a message naming what is wrong.
    base = [index, "pairs", "--right", rroot, "--out", os.path.join(a.tmp, "bad")]
    bad_dir = os.path.join(a.tmp, "badfiles", "legacysurvey", "x", "healpix=1113")
    os.makedirs(bad_dir)
    with open(os.path.join(bad_dir, "001-of-001.hdf5"), "w") as f:
        f.write("not hdf5")
    for args, needle in (
            (["--left", os.path.join(a.tmp, "nowhere")], "nowhere"),
            (["--left", lroot, "--radius", "0arcsec"], "--radius"),
            (["--left", lroot, "--radius", "abc"], "--radius"),
            (["--left", os.path.join(a.tmp, "badfiles")], "001-of-001.hdf5"),
            (["--left", rroot], "both sides"),
            (["--left", lroot, "--name", "../up"], "--name"),
    ):
        p = run(base + args, ok=False)
        check(p.returncode == 1 and needle in p.stderr, f"bad input {args}: rc {p.returncode}, {p.stderr.strip()[:200]}")
    p = run([index, "pairs", "--left", lroot, "--right", rroot, "--out", lroot], ok=False)
    check(p.returncode == 1 and "overlaps" in p.stderr, f"--out inside --left refused: {p.stderr.strip()[:200]}")
    p = run([index, "pairs", "--left", lroot, "--right", rroot, "--radius", "2arcsec", "--out",
             os.path.join(a.tmp, "out-nearest")], ok=False)
    check(p.returncode == 1 and "pairs_run.txt" in p.stderr, f"another run into the same folder refused: {p.stderr.strip()[:200]}")
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
