#!/usr/bin/python3
"""End-to-end checks of `mmu-index train` and cross-modal search (issue 6) on a
small generated set (make_samples --n 600: ~260 image-spectrum pairs):

  r. the same --seed gives the same loss lines (examples/s aside);
  k. a run killed after its first checkpoint, then --resume'd, ends with the same
     weights as an uninterrupted run;
  e. `build --model` on each trained tower == python3-torch running the same
     TorchScript on the numpy reference transform of the same objects (cos >= 0.9999);
  h. held-out image -> spectrum retrieval far above chance;
  x. `mmu-search --like ID --from image|spectrum|both --to ...` searches the other tower
     and says so; a space without a shared space is refused;
  b. bad input: store without pairs, too few pairs for a split, other modalities,
     an --out that is not ours (nothing overwritten), --resume with other options.

Usage: test_train.py --bin BUILD --samples-generator tools/make_samples.py --tmp DIR
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_transforms as ref  # noqa: E402
from harness import binaries_samples_tmp  # noqa: E402
from test_models import load_space, card_of, space_of  # noqa: E402

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")
EPOCHS = ["--epochs", "6", "--batch-size", "32", "--seed", "3", "--embed-dim", "32", "--image-crop", "48",
          "--patience", "6", "--lr", "2e-3"]


PASSED, FAILED = [0], []


def check(cond, what, detail=""):
    detail = " | ".join(l.strip() for l in str(detail).splitlines() if l.strip())
    print(("ok   " if cond else "FAIL ") + what + ((" (%s)" if cond else ": %s") % detail if detail else ""), flush=True)
    if cond:
        PASSED[0] += 1
    else:
        FAILED.append(what)
    return cond


def run(cmd, timeout=600):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=ENV)


def must(cmd):
    p = run(cmd)
    if p.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s" % (p.returncode, " ".join(map(str, cmd)), p.stderr))
    return p


def loss_lines(out):
    """The epoch lines without their timing."""
    return [re.sub(r", [0-9.]+ examples/s", "", l) for l in out.splitlines() if l.startswith("epoch ")]


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def weights(pkg):
    m = torch.jit.load(os.path.join(pkg, "model.pt"), map_location="cpu")
    return [p.detach().numpy().copy() for p in m.parameters()]


def main():
    a, index, search = binaries_samples_tmp(inputs=("--generator",))
    t0 = time.time()
    samples, store = os.path.join(a.tmp, "samples"), os.path.join(a.tmp, "store")
    must(["/usr/bin/python3", a.generator, "--out", samples, "--n", "600", "--seed", "5"])
    must([index, "build", samples, "--store", store, "--quiet"])
    # b: a store without links has no pairs (checked before the links exist).
    p = run([index, "train", "--store", store, "--out", os.path.join(a.tmp, "nopairs")] + EPOCHS)
    check(p.returncode == 1 and "no linked image-spectrum pairs" in p.stderr and
            not os.path.exists(os.path.join(a.tmp, "nopairs")), "b store without pairs: clear error, nothing written",
            p.stderr.strip())
    must([index, "xmatch", "--store", store, "--left", "legacysurvey", "--right", "desi", "--link"])
    print("# samples, store, links in %.1f s" % (time.time() - t0))

    # r + k: two full runs and one killed after epoch 1, then resumed.
    t1 = time.time()
    full = os.path.join(a.tmp, "full")
    p1 = must([index, "train", "--store", store, "--out", full] + EPOCHS)
    print("# one training: %.1f s" % (time.time() - t1))
    print(p1.stdout)
    again = os.path.join(a.tmp, "again")
    p2 = must([index, "train", "--store", store, "--out", again] + EPOCHS)
    l1, l2 = loss_lines(p1.stdout), loss_lines(p2.stdout)
    check(len(l1) == 6 and l1 == l2, "r same seed, same loss lines", "\n".join(l1 + l2))
    check(digest(os.path.join(full, "image", "model.pt")) == digest(os.path.join(again, "image", "model.pt")),
            "r same seed, same image tower file")

    killed = os.path.join(a.tmp, "killed")
    proc = subprocess.Popen([index, "train", "--store", store, "--out", killed] + EPOCHS,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    state = os.path.join(killed, "checkpoint", "state.json")
    while proc.poll() is None and not os.path.exists(state):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check(os.path.exists(state) and json.load(open(state))["epoch"] == 1, "k killed after the first checkpoint")
    p = run([index, "train", "--store", store, "--out", killed] + EPOCHS)
    check(p.returncode == 1 and "--resume" in p.stderr, "k an existing training without --resume is refused",
            p.stderr.strip())
    p3 = run([index, "train", "--store", store, "--out", killed, "--resume"] + EPOCHS)
    check(p3.returncode == 0 and loss_lines(p3.stdout) == l1, "k resumed run prints the same loss lines",
            p3.stderr.strip() + "\n".join(loss_lines(p3.stdout)))
    for tower in ("image", "spectrum"):
        wa, wb = weights(os.path.join(full, tower)), weights(os.path.join(killed, tower))
        same = len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))
        check(same, "k resumed %s tower weights == uninterrupted run's" % tower)
    p = run([index, "train", "--store", store, "--out", killed, "--resume"] + [v if v != "3" else "4" for v in EPOCHS])
    check(p.returncode == 1 and "--seed" in p.stderr, "b --resume with another --seed is refused", p.stderr.strip())

    # e: the trained packages through `build --model` == python3-torch on the same inputs.
    pkgs = [os.path.join(full, "image"), os.path.join(full, "spectrum")]
    card = card_of(pkgs[0])
    check(card["shared_space"]["id"] == card_of(pkgs[1])["shared_space"]["id"] and card["format"] == "mmu-model/1" and
            card["sha256"] == digest(os.path.join(pkgs[0], "model.pt")), "e cards: same shared space, pinned files")
    must([index, "build", samples, "--store", store, "--quiet", "--model", pkgs[0], "--model", pkgs[1]])
    for pkg in pkgs:
        vecs, rows = load_space(store, space_of(pkg))
        model = torch.jit.load(os.path.join(pkg, "model.pt"), map_location="cpu").eval()
        worst = 1.0
        for path in sorted({r[0] for r in rows}):
            idx = [i for i, r in enumerate(rows) if r[0] == path]
            x = ref.transform_file(path, card_of(pkg)).astype(np.float32)
            with torch.no_grad():
                y = model(torch.from_numpy(x)).double().numpy()
            y /= np.linalg.norm(y, axis=1, keepdims=True)
            got = vecs[idx].astype(np.float64)
            want = y[[rows[i][1] for i in idx]]
            worst = min(worst, float(np.min(np.sum(got * want, axis=1))))
        check(worst >= 0.9999, "e %s: build --model == python3-torch (min cosine)" % space_of(pkg), "%.6f" % worst)

    # h: held-out retrieval from the final epoch line.
    m = re.search(r"val top-1 ([0-9.]+) top-10 ([0-9.]+) \(chance ([0-9.]+)/([0-9.]+)\)", l1[-1])
    top1, top10, c1, c10 = map(float, m.groups())
    check(top10 >= 3 * c10 and top1 >= 3 * c1, "h held-out image->spectrum retrieval far above chance", l1[-1])

    # x: cross-modal search.
    out = json.load(open(os.path.join(full, "train.json")))
    check(out["finished"] and len(out["history"]) == 6, "x train.json records the run")
    gen = os.path.join(store, open(os.path.join(store, "CURRENT")).read().strip())
    import sqlite3
    db = sqlite3.connect(os.path.join(gen, "catalog.sqlite"))
    img_id, spec_id = db.execute(
        "SELECT a.object_id, b.object_id FROM links l JOIN objects a ON a.row IN (l.row_a, l.row_b) "
        "JOIN objects b ON b.row IN (l.row_a, l.row_b) WHERE a.survey = 'legacysurvey' AND b.survey = 'desi' "
        "LIMIT 1").fetchone()
    db.close()
    img_space, spec_space = space_of(pkgs[0]), space_of(pkgs[1])
    for frm, to, qid, space in (("image", "spectrum", img_id, spec_space), ("spectrum", "image", spec_id, img_space),
                                ("both", "spectrum", img_id, spec_space)):
        p = run([search, "--store", store, "--like", qid, "--from", frm, "--to", to, "--k", "5", "--format", "json"])
        ok = p.returncode == 0
        if ok:
            r = json.loads(p.stdout)
            ok = r["space"] == space and (frm + " -> " + to) in r["method"] and len(r["results"]) == 5
        check(ok, "x --from %s --to %s searches %s and says so" % (frm, to, space), (p.stderr + p.stdout)[:400])
    ids_path = os.path.join(a.tmp, "cross_ids.txt")
    with open(ids_path, "w") as f:
        f.write(img_id + "\n" + spec_id + "\n")
    p = run([search, "--store", store, "--like-file", ids_path, "--from", "image", "--to", "spectrum", "--k", "5",
             "--format", "json"])
    ok = p.returncode == 0
    if ok:
        for block in json.loads(p.stdout):
            single = json.loads(run([search, "--store", store, "--like", block["label"], "--from", "image", "--to",
                                     "spectrum", "--k", "5", "--format", "json"]).stdout)
            ok = ok and block["space"] == spec_space and "image -> spectrum" in block["method"] and \
                [r["object_id"] for r in block["results"]] == [r["object_id"] for r in single["results"]]
    check(ok, "x --like-file --from image --to spectrum equals the single queries", (p.stderr + p.stdout)[:400])
    p = run([search, "--store", store, "--like", img_id, "--from", "image", "--to", "spectrum", "--space", "image"])
    check(p.returncode == 1 and "shared space" in p.stderr, "x a space with no shared space is refused",
            p.stderr.strip())
    p = run([search, "--store", store, "--like", img_id, "--from", "image"])
    check(p.returncode == 1 and "--to" in p.stderr, "x --from without --to is refused", p.stderr.strip())

    # b: bad input.
    p = run([index, "train", "--store", store, "--out", os.path.join(a.tmp, "bad1"), "--pairs", "image:lightcurve"])
    check(p.returncode == 1 and "--pairs" in p.stderr, "b mismatched modalities: clear error", p.stderr.strip())
    p = run([index, "train", "--store", store, "--out", os.path.join(a.tmp, "bad2"), "--batch-size", "1000"])
    check(p.returncode == 1 and "too few pairs for a validation split" in p.stderr and
            not os.path.exists(os.path.join(a.tmp, "bad2")), "b too few held-out pairs: clear error, nothing written",
            p.stderr.strip())
    theirs = os.path.join(a.tmp, "theirs")
    os.makedirs(theirs)
    with open(os.path.join(theirs, "notes.txt"), "w") as f:
        f.write("keep me\n")
    p = run([index, "train", "--store", store, "--out", theirs] + EPOCHS)
    check(p.returncode == 1 and "not empty" in p.stderr and os.listdir(theirs) == ["notes.txt"] and
            open(os.path.join(theirs, "notes.txt")).read() == "keep me\n",
            "b an --out that is not ours: clear error, nothing overwritten", p.stderr.strip())
    print("# total %.1f s" % (time.time() - t0))
    print("%d passed, %d failed" % (PASSED[0], len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
