#!/usr/bin/python3
"""Python peer of `mmu-search --like`: numpy brute-force cosine top-k over a
store's vectors.f32, what a user would write against the same store files.

One query, as a whole process (startup + import numpy + load + search + CSV):

    /usr/bin/python3 bench/peer_like.py --store DIR --like ID [--survey S] [--space S] [--k 50]

  resolves ID in catalog.sqlite, np.fromfile's the space's vectors.f32, scores
  every vector (V @ q, = cosine: the vectors are L2-normalised), takes the top
  k+1 with argpartition, drops the query, fetches the neighbours' catalog rows
  and prints the same CSV columns as `mmu-search --format csv`.

Warm per-query latency (everything loaded once, like a notebook session):

    /usr/bin/python3 bench/peer_like.py --store DIR --bench-ids FILE [--k 50] [--warmup 20]

  FILE has one "object_id[,survey]" per line; prints one JSON line of stats.
"""

import argparse
import json
import os
import sqlite3
import sys
import time

import numpy as np


def generation(store):
    with open(os.path.join(store, "CURRENT")) as f:
        return os.path.join(store, f.read().strip())


def top_k(vectors, qrow, k):
    """Rows and scores of the k best vectors for vectors[qrow], self excluded."""
    scores = vectors @ vectors[qrow]
    kk = min(k + 1, len(scores))
    idx = np.argpartition(-scores, kk - 1)[:kk]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    idx = idx[idx != qrow][:k]
    return idx, scores[idx]


def one_query(args):
    gen = generation(args.store)
    db = sqlite3.connect(f"file:{os.path.join(gen, 'catalog.sqlite')}?mode=ro", uri=True)
    sql = "SELECT o.row, o.survey, s.space, s.vrow FROM objects o JOIN space_rows s ON s.row = o.row WHERE o.object_id = ?"
    hits = [h for h in db.execute(sql, (args.like,))
            if (not args.survey or h[1] == args.survey) and (not args.space or h[2] == args.space)]
    if len(hits) != 1:
        sys.exit(f"error: '{args.like}' matches {len(hits)} vectors; give --survey/--space")
    _, _, space, vrow = hits[0]
    dim, count = db.execute("SELECT dim, count FROM spaces WHERE name = ?", (space,)).fetchone()
    vectors = np.fromfile(os.path.join(gen, "spaces", space, "vectors.f32"), dtype=np.float32).reshape(count, dim)
    idx, scores = top_k(vectors, vrow, args.k)
    vrows = [int(v) for v in idx]
    q = ("SELECT s.vrow, o.object_id, o.survey, o.ra, o.dec FROM space_rows s JOIN objects o ON o.row = s.row "
         f"WHERE s.space = ? AND s.vrow IN ({','.join('?' * len(vrows))})")
    info = {r[0]: r[1:] for r in db.execute(q, (space, *vrows))}
    out = ["rank,object_id,survey,ra,dec,score"]
    for rank, (v, s) in enumerate(zip(vrows, scores), 1):
        oid, survey, ra, dec = info[v]
        out.append(f"{rank},{oid},{survey},{ra:.9f},{dec:.9f},{s:.8f}")
    print("\n".join(out))


class Session:
    """Everything loaded once: vectors per space, id -> (survey, space, vrow), catalog columns."""

    def __init__(self, store):
        gen = generation(store)
        db = sqlite3.connect(f"file:{os.path.join(gen, 'catalog.sqlite')}?mode=ro", uri=True)
        self.vectors, self.cols, self.by_id = {}, {}, {}
        for space, dim, count in db.execute("SELECT name, dim, count FROM spaces"):
            self.vectors[space] = np.fromfile(os.path.join(gen, "spaces", space, "vectors.f32"),
                                              dtype=np.float32).reshape(count, dim)
            rows = db.execute("SELECT s.vrow, o.object_id, o.survey, o.ra, o.dec FROM space_rows s JOIN objects o "
                              "ON o.row = s.row WHERE s.space = ? ORDER BY s.vrow", (space,)).fetchall()
            self.cols[space] = {
                "object_id": np.array([r[1] for r in rows]), "survey": np.array([r[2] for r in rows]),
                "ra": np.array([r[3] for r in rows]), "dec": np.array([r[4] for r in rows])}
            for vrow, oid, survey, _, _ in rows:
                self.by_id.setdefault(oid, []).append((survey, space, vrow))

    def like(self, object_id, survey="", k=50):
        hits = [h for h in self.by_id[object_id] if not survey or h[0] == survey]
        _, space, vrow = hits[0]
        idx, scores = top_k(self.vectors[space], vrow, k)
        c = self.cols[space]
        return list(zip(range(1, len(idx) + 1), c["object_id"][idx], c["survey"][idx], c["ra"][idx],
                        c["dec"][idx], scores))


def bench(args):
    t0 = time.perf_counter()
    session = Session(args.store)
    load_ms = (time.perf_counter() - t0) * 1e3
    queries = []
    with open(args.bench_ids) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                oid, _, survey = line.partition(",")
                queries.append((oid, survey))
    for oid, survey in queries[: args.warmup]:
        session.like(oid, survey, args.k)
    times = []
    for oid, survey in queries:
        t0 = time.perf_counter()
        session.like(oid, survey, args.k)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.sort(np.array(times))
    pct = lambda p: float(t[min(len(t) - 1, int(p * (len(t) - 1) + 0.5))])  # noqa: E731
    print(json.dumps({"load_ms": round(load_ms, 3), "like": {
        "n": len(t), "median_ms": round(pct(0.5), 4), "p90_ms": round(pct(0.9), 4),
        "mean_ms": round(float(t.mean()), 4), "min_ms": round(float(t[0]), 4), "max_ms": round(float(t[-1]), 4)}}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--like")
    ap.add_argument("--survey", default="")
    ap.add_argument("--space", default="")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--bench-ids")
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    if args.bench_ids:
        bench(args)
    elif args.like:
        one_query(args)
    else:
        ap.error("give --like ID or --bench-ids FILE")


if __name__ == "__main__":
    main()
