"""Issue 15 point 3: the spectrum baseline fills masked bins by gappy PCA.
Masked twins (tests/py/masked_twins.py: a contiguous 30-60 % of pixels flagged
bad, noise added at ivar) retrieve their unmasked original as top-1 by brute
force over the stored vectors (an independent numpy computation); the space is
version 3 and extending a version-2 space (fewer fill components) asks for --refit.
Run: test_gappy_spectra.py --bin BUILD --generator tools/make_samples.py --tmp DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
from masked_twins import twin_top1, write_twins  # noqa: E402
from test_export import load_space  # noqa: E402

CASES, case = case_list()
# Here 0.969 of 223; 0.953-0.982 over sample seeds 3-5, 0.959 on 466 twins
# (bench/fidelity_spectra.py); interpolation gave 0.55. Issue 15's goal.
MIN_TOP1 = 0.95


def setup(env):
    env.data = os.path.join(env.tmp, "samples")
    run("/usr/bin/python3", env.generator, "--out", env.data, "--n", "300", "--seed", "3")
    env.twins = os.path.join(env.tmp, "twins")
    env.pairs = write_twins(env.data, env.twins)
    env.store = os.path.join(env.tmp, "store")
    run(env.index, "build", os.path.join(env.data, "desi"), env.twins, "--store", env.store, "--quiet")
    env.vecs, env.meta, env.info = load_space(env.store, "spectrum")


@case("masked twins retrieve their unmasked original as top-1")
def _(env):
    need(len(env.pairs) >= 200, "only %d twins" % len(env.pairs))
    top1, n = twin_top1(env.vecs, env.meta, env.pairs)
    print("  masked-twin top-1: %.3f of %d" % (top1, n))
    need(n == len(env.pairs), "%d twins in the space, %d written" % (n, len(env.pairs)))
    need(top1 >= MIN_TOP1, "top-1 %.3f < %.2f" % (top1, MIN_TOP1))


@case("vectors are finite and unit; the space says baseline-pca version 3")
def _(env):
    need(np.isfinite(env.vecs).all(), "non-finite vector values")
    need(np.allclose(np.linalg.norm(env.vecs, axis=1), 1, atol=1e-4), "vectors not unit length")
    need(env.info[2:4] == ("baseline-pca", "3"), "space model/version %s" % (env.info[2:4],))


@case("extending a version-2 spectrum space is refused with 'rebuild it with --refit'")
def _(env):
    import shutil
    import sqlite3
    store = os.path.join(env.tmp, "store_v1")
    shutil.copytree(env.store, store, symlinks=True)
    with open(os.path.join(store, "CURRENT")) as f:
        gen = os.path.join(store, f.read().strip())
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    db.execute("UPDATE spaces SET version='2' WHERE name='spectrum'")
    db.commit()
    db.close()
    extra = os.path.join(env.tmp, "extra")
    write_twins(env.data, extra, seed=99)
    for p in [os.path.join(r, f) for r, _, fs in os.walk(extra) for f in fs]:  # new ids again
        import h5py
        with h5py.File(p, "r+") as h:
            h["object_id"][...] = h["object_id"][:] - (1 << 59)
    p = run(env.index, "build", os.path.join(env.data, "desi"), env.twins, extra, "--store", store, "--quiet", ok=False)
    need(p.returncode != 0, "extending a version-2 space succeeded")
    need("--refit" in p.stderr and "spectrum" in p.stderr, "message: %s" % p.stderr.strip())


if __name__ == "__main__":
    args, index, search = binaries_samples_tmp(inputs=("--generator",))
    env = Env()
    env.index, env.search, env.tmp, env.generator = index, search, args.tmp, args.generator
    sys.exit(run_cases(CASES, env, setup))
