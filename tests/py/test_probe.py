"""End-to-end checks of `mmu-search probe` against python3-sklearn on the same
embeddings and the same folds (read from the probe's json report): ridge with
the penalty chosen by inner leave-one-fold-out CV (GridSearchCV), k-NN k=64
with distance weights on standardised embeddings, one-vs-rest logistic
regression; folds grouped by HEALPix cell; predict; bad input.
Run: test_probe.py --bin BUILD --samples DIR --tmp DIR
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Env, binaries_samples_tmp, case_list, need, run, run_cases  # noqa: E402
from test_export import load_space  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CASES, case = case_list()





def probe(env, *args, ok=True):
    return run(env.search, "--store", env.store, "probe", *args, ok=ok)


def setup(env):
    env.data = os.path.join(env.tmp, "samples")
    run("/usr/bin/python3", os.path.join(HERE, "..", "..", "tools", "make_samples.py"), "--out", env.data,
        "--n", "800", "--seed", "7")
    env.truth = os.path.join(env.data, "truth.csv")
    env.store = os.path.join(env.tmp, "store")
    run(env.index, "build", env.data, "--store", env.store, "--quiet")


def report(env, space, target, *extra):
    r = json.loads(probe(env, "--space", space, "--target", target, "--labels", env.truth, "--format", "json", *extra).stdout)
    vecs, meta, _ = load_space(env.store, space)
    row = {m[0]: i for i, m in enumerate(meta)}
    X = vecs[[row[o["object_id"]] for o in r["objects"]]].astype(np.float64)
    fold = np.array([o["fold"] for o in r["objects"]])
    cells = np.array([meta[row[o["object_id"]]][4] for o in r["objects"]])
    return r, X, fold, cells


def oof(X, y, fold, make):
    """Out-of-fold predictions of make(train_idx) fitted per outer fold."""
    pred = np.empty(len(y), dtype=object)
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        pred[te] = make(tr).fit(X[tr], y[tr]).predict(X[te])
    return pred


@case("regression: ridge (inner-CV alpha) and k-NN R² equal sklearn's on the same folds; folds never split a cell")
def _(env):
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.metrics import r2_score
    for space in ("image", "spectrum"):
        r, X, fold, cells = report(env, space, "redshift")
        y = np.array([o["true"] for o in r["objects"]])
        for c in np.unique(cells):
            need(len(set(fold[cells == c])) == 1, "cell %d is split across folds" % c)

        def ridge(tr):
            inner = fold[tr]
            splits = [(np.where(inner != g)[0], np.where(inner == g)[0]) for g in np.unique(inner)]
            return GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": r["alphas"]},
                                cv=splits, scoring="neg_mean_squared_error")

        knn = lambda tr: make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=64, weights="distance"))  # noqa: E731
        r2_ridge = r2_score(y, oof(X, y, fold, ridge).astype(float))
        r2_knn = r2_score(y, oof(X, y, fold, knn).astype(float))
        need(abs(r2_ridge - r["linear"]["r2"]) <= 0.005, "%s ridge R² %.4f, sklearn %.4f" % (space, r["linear"]["r2"], r2_ridge))
        need(abs(r2_knn - r["knn"]["r2"]) <= 0.005, "%s k-NN R² %.4f, sklearn %.4f" % (space, r["knn"]["r2"], r2_knn))
        print("   %s redshift: ridge R² %.4f (sklearn %.4f), k-NN R² %.4f (sklearn %.4f)" %
              (space, r["linear"]["r2"], r2_ridge, r["knn"]["r2"], r2_knn))


@case("classification: k-NN accuracy identical to sklearn's, one-vs-rest logistic within 1%; confusion sums to n")
def _(env):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    r, X, fold, _ = report(env, "image", "class")
    y = np.array([o["true"] for o in r["objects"]])
    knn = lambda tr: make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=64, weights="distance"))  # noqa: E731
    logit = lambda tr: make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=5000)))  # noqa: E731
    acc_knn = float(np.mean(oof(X, y, fold, knn) == y))
    acc_logit = float(np.mean(oof(X, y, fold, logit) == y))
    need(abs(acc_knn - r["knn"]["accuracy"]) < 1e-12, "k-NN accuracy %.4f, sklearn %.4f" % (r["knn"]["accuracy"], acc_knn))
    need(abs(acc_logit - r["linear"]["accuracy"]) <= 0.01,
         "logistic accuracy %.4f, sklearn %.4f" % (r["linear"]["accuracy"], acc_logit))
    need(sum(map(sum, r["knn"]["confusion"])) == len(y), "confusion matrix counts every object")
    print("   image class: logistic %.4f (sklearn %.4f), k-NN %.4f (sklearn %.4f)" %
          (r["linear"]["accuracy"], acc_logit, r["knn"]["accuracy"], acc_knn))


@case("--save + predict: the saved ridge probe reproduces sklearn's fit on all labels; --plot writes an SVG")
def _(env):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    import csv
    saved, svg = os.path.join(env.tmp, "z.json"), os.path.join(env.tmp, "z.svg")
    probe(env, "--space", "spectrum", "--target", "redshift", "--labels", env.truth, "--save", saved, "--plot", svg)
    with open(svg) as f:
        need(f.read().startswith("<svg") , "plot is an SVG")
    p = json.load(open(saved))
    r, X, _, _ = report(env, "spectrum", "redshift")
    y = np.array([o["true"] for o in r["objects"]])
    model = make_pipeline(StandardScaler(), Ridge(alpha=p["alpha"])).fit(X, y)
    vecs, meta, _ = load_space(env.store, "spectrum")
    rows = list(csv.DictReader(run(env.search, "--store", env.store, "predict", "--probe", saved).stdout.splitlines()))
    need(len(rows) == len(meta), "predict covers every object: %d of %d" % (len(rows), len(meta)))
    want = model.predict(vecs.astype(np.float64))
    got = np.array([float(r_["prediction"]) for r_ in rows])
    need(np.max(np.abs(got - want)) < 1e-5, "predict differs from sklearn by %g" % np.max(np.abs(got - want)))


@case("bad input: unknown column, non-numeric or constant target, too few labels, ids matching nothing")
def _(env):
    def fails(why, words, *args):
        p = probe(env, "--space", "spectrum", *args, ok=False)
        need(p.returncode == 1 and all(w in p.stderr for w in words), "%s: rc %d %s" % (why, p.returncode, p.stderr))
    fails("unknown CSV column", ["--target", "nope", "truth.csv"], "--target", "nope", "--labels", env.truth)
    fails("unknown catalog column", ["--target", "nope", "catalog column"], "--target", "nope")
    fails("non-numeric regression", ["non-numeric", "class"], "--target", "class", "--labels", env.truth, "--task", "regression")
    const = os.path.join(env.tmp, "const.csv")
    lines = open(env.truth).read().splitlines()
    with open(const, "w") as f:
        f.write("object_id,survey,z\n" + "".join("%s,%s,0.5\n" % tuple(l.split(",")[1::-1]) for l in lines[1:]))
    fails("constant target", ["constant", "'z'"], "--target", "z", "--labels", const)
    few = os.path.join(env.tmp, "few.csv")
    with open(few, "w") as f:
        f.write("\n".join(lines[:6]) + "\n")
    fails("too few labels", ["too few", "fold"], "--target", "redshift", "--labels", few)
    none = os.path.join(env.tmp, "none.csv")
    with open(none, "w") as f:
        f.write("object_id,redshift\nno-such-1,0.1\nno-such-2,0.2\n")
    fails("ids matching nothing", ["no object", "none.csv"], "--target", "redshift", "--labels", none)
    fails("bad --task", ["--task"], "--target", "redshift", "--labels", env.truth, "--task", "ranking")


if __name__ == "__main__":
    args, index, search = binaries_samples_tmp()
    env = Env()
    env.tmp, env.index, env.search = os.path.abspath(args.tmp), index, search
    sys.exit(run_cases(CASES, env, setup, only=os.environ.get("MMU_TEST_ONLY")))
