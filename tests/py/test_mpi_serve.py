"""`mpirun -n 4 mmu-search-mpi --serve` over 4 stores (exact spectrum space, IVF
image space) against one process (`mmu-search --store x4 --format json`,
itself checked against a brute force by test_store_set.py): GET /like,
POST /batch and a filtered POST /query answer the same; bad requests are 4xx
and leave the service in step; a rank that dies mid-service fails its request
with a 503 naming it and the job ends; SIGTERM to rank 0 stops the service with
exit 0, and to mpirun ends every rank within seconds.
Skipped (exit 77, reason printed) where mpirun or mmu-search-mpi is missing.
Run: test_mpi_serve.py --bin BUILD --samples DIR --tmp DIR
"""
import concurrent.futures
import json
import os
import random
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import case_list, need, run  # noqa: E402
import store_set_fixtures as ssf  # noqa: E402
from test_mpi import MPIRUN, run_mpi_cases  # noqa: E402
from test_serve import request  # noqa: E402

cases, case = case_list()


class Service:
    """`mpirun -n N mmu-search-mpi --serve` on a free port; its rank 0's pid from the start lines."""

    def __init__(self, env, n, *extra):
        """Starts it; ready() waits for its start lines."""
        store_flags = [a for s in env.stores for a in ("--store", s)]
        cmd = MPIRUN + ["-n", str(n), env.mpi_bin, *store_flags, "--serve", "--port", "0", "--threads", "4", *extra]
        self.n = n
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def ready(self):
        # Raw reads: a buffered readline would hold the second line while select() waits for more.
        # Warnings (a setting of the environment, say) may come first: they are not start lines.
        def start_lines(raw):
            return [l for l in raw.decode(errors="replace").splitlines() if not l.startswith("warning: ")]

        out, deadline = b"", time.monotonic() + 30
        while len(start_lines(out.rpartition(b"\n")[0])) < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 1)
            chunk = os.read(self.proc.stderr.fileno(), 65536) if ready else b""
            if ready and not chunk:
                break
            out += chunk
        self.lines = start_lines(out)
        if len(self.lines) < 2:
            self.kill()
            raise AssertionError("the service did not start: %r" % out)
        m = re.match(r"serving 4 stores over %d ranks on http://127\.0\.0\.1:(\d+)$" % self.n, self.lines[0].strip())
        need(m is not None, "start line: %r" % self.lines[0])
        self.port = int(m.group(1))
        m = re.match(r"rank 0 is pid (\d+) on .+: SIGTERM to it stops", self.lines[1])
        need(m is not None, "pid line: %r" % self.lines[1])
        self.rank0 = int(m.group(1))
        return self

    def get(self, path):
        return request("http://127.0.0.1:%d%s" % (self.port, path))

    def post(self, path, body):
        return request("http://127.0.0.1:%d%s" % (self.port, path), body)

    def wait(self, timeout):
        """(exit code or None when it had to be killed, seconds waited, rest of stderr)."""
        start = time.monotonic()
        try:
            _, err = self.proc.communicate(timeout=timeout)
            return self.proc.returncode, time.monotonic() - start, err.decode(errors="replace")
        except subprocess.TimeoutExpired:
            self.kill()
            return None, time.monotonic() - start, self.proc.communicate()[1].decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


def blocks(reply):
    return [(r["label"], r.get("error"), r.get("method"), r.get("results")) for r in reply]


def same_ranking(got, want, label):
    """One block each: the same ids in the same order and the same scores, bit for bit (exact scores are
    canonical: a row's float does not depend on the batch or the store it sits in; IVF scores are FAISS's
    per-vector inner products, the same in a batch and alone)."""
    need(got["label"] == want["label"] and got.get("error") == want.get("error") and
         got.get("method") == want.get("method"), "%s: %s vs one process %s" % (label, got, want))
    ids = lambda r: [(x["rank"], x["survey"], x["object_id"]) for x in r["results"]]  # noqa: E731
    need(ids(got) == ids(want), "%s: ids or order differ from one process:\n%s\nvs\n%s" % (label, got, want))
    worst = max((abs(a["score"] - b["score"]) for a, b in zip(got["results"], want["results"])), default=0)
    need(worst == 0, "%s: a score differs by %g from one process" % (label, worst))


def one_process(env, *args):
    """What `mmu-search --store x4 ... --format json` prints for these query flags."""
    store_flags = [a for s in env.stores for a in ("--store", s)]
    return json.loads(run(env.search, *store_flags, *args, "--format", "json").stdout)


def setup(env):
    env.stores = ssf.twin_stores(env.index, env.samples, env.tmp, 4)
    for store in env.stores:  # image searched by IVF, spectrum exactly
        run(env.index, "reindex", "--store", store, "--space", "image", "--index", "ivf", "--recall-queries", "5")
    env.spaces = {name: ssf.Space(env.stores, name) for name in ("image", "spectrum")}
    rng = random.Random(1804)
    env.ids = rng.sample([oid for sp in env.spaces.values() for oid in sp.ids], 50)
    # All started at once: each mpirun takes a second or two to start.
    env.service = Service(env, 4)
    env.dying = Service(env, 3, "--test-die-rank", "2", "--test-die-scan", "2")
    env.stopping = Service(env, 2)
    env.service.ready()


def like_path(oid, **params):
    return "/like?" + urllib.parse.urlencode([("id", oid)] + list(params.items()))


@case("50 GET /like (4 at once) equal one process over the 4 stores: ids, order, scores; IVF and exact")
def _(env):
    id_file = os.path.join(env.tmp, "ids.txt")
    with open(id_file, "w") as f:
        f.write("\n".join(env.ids) + "\n")
    want = one_process(env, "--like-file", id_file, "--k", "20")
    need(len(want) == 50 and all(not w.get("error") and len(w["results"]) == 20 for w in want),
         "the one-process answer is incomplete")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda oid: env.service.get(like_path(oid, k=20)), env.ids))
    for oid, (status, reply), w in zip(env.ids, replies, want):
        need(status == 200, "GET /like %s: %d %s" % (oid, status, reply))
        same_ranking(reply, w, "GET /like " + oid)
    methods = {r["space"]: r["method"] for _, r in replies}
    need("ivf" in methods["image"].lower() and "over 4 stores" in methods["image"], "image: %s" % methods["image"])
    need("ivf" not in methods["spectrum"].lower(), "spectrum: %s" % methods["spectrum"])


@case("POST /batch equals --like-file, one block per id (an unknown id's error in its block)")
def _(env):
    ids = env.ids[:20] + ["no-such-object"]
    id_file = os.path.join(env.tmp, "batch.txt")
    with open(id_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    p = subprocess.run([env.search, *[a for s in env.stores for a in ("--store", s)], "--like-file", id_file, "--k",
                        "7", "--format", "json"], capture_output=True, text=True, timeout=60)
    want = blocks(json.loads(p.stdout))
    status, reply = env.service.post("/batch", {"ids": ids, "k": 7})
    need(status == 200, "POST /batch: %d %s" % (status, reply))
    need(blocks(reply) == want, "POST /batch differs from --like-file")
    need(want[-1][1] and "no-such-object" in want[-1][1], "the unknown id's block: %s" % (want[-1],))


def z_of(stores):
    """Catalog column Z by object id, read from the stores' catalogs."""
    z = {}
    for store in stores:
        db = sqlite3.connect(os.path.join(ssf.generation(store), "catalog.sqlite"))
        z.update(db.execute("SELECT o.object_id, v.num FROM objects o JOIN object_values v ON v.row = o.row "
                            "WHERE v.name = 'Z'").fetchall())
    return z


@case("filtered queries carry their options to every rank: where + in, cone + nprobe, exact")
def _(env):
    spec, img = env.spaces["spectrum"], env.spaces["image"]
    oid = spec.ids[5]
    # A cut at the median Z of the unfiltered answer: ranks that ignored it would return the objects above it.
    status, unfiltered = env.service.get(like_path(oid, k=12))
    need(status == 200, "GET /like %s: %d" % (oid, status))
    z = z_of(env.stores)
    cut = sorted(z[r["object_id"]] for r in unfiltered["results"])[6]
    where = "Z < %r" % cut
    i = 3
    ra, dec = img.ra[i], img.dec[i]
    tries = [
        ({"like": oid, "k": 12, "where": where, "in": ["desi"]},
         ["--like", oid, "--k", "12", "--where", where, "--in", "desi"]),
        ({"like": img.ids[i], "k": 9, "cone": {"ra": ra, "dec": dec, "radius_deg": 30}, "nprobe": 1},
         ["--like", img.ids[i], "--k", "9", "--cone", "%r,%r,30deg" % (ra, dec), "--nprobe", "1"]),
        ({"like": img.ids[7], "k": 11, "exact": True}, ["--like", img.ids[7], "--k", "11", "--exact"]),
    ]
    for body, args in tries:
        status, reply = env.service.post("/query", body)
        need(status == 200, "POST /query %s: %d %s" % (body, status, reply))
        want = one_process(env, *args)
        need(blocks([reply]) == blocks([want]), "POST /query %s differs from one process:\n%s\nvs\n%s" %
             (body, reply, want))
    status, reply = env.service.post("/query", tries[0][0])
    need(reply["results"] and all(z[r["object_id"]] < cut for r in reply["results"]),
         "a result fails %s: %s" % (where, reply["results"]))
    status, reply = env.service.post("/query", tries[2][0])
    need("exact" in reply["method"] and "ivf" not in reply["method"].lower(), "exact: method %s" % reply["method"])


@case("bad requests are 4xx naming what is wrong, and the service stays up and in step")
def _(env):
    bad = [
        (like_path("no-such-object"), 404, "no-such-object"),
        (like_path(env.ids[0], space="nope"), None, "nope"),
        (like_path(env.ids[0], k=0), 400, "k"),
        (like_path(env.ids[0], k=10**9), 400, "k"),
        (like_path(env.ids[0], where="NOPE <"), 400, "NOPE"),
    ]
    for path, code, word in bad:
        status, reply = env.service.get(path)
        need(400 <= status < 500 and (code is None or status == code) and word in reply.get("error", ""),
             "GET %s: %d %s" % (path, status, reply))
    status, reply = env.service.get(like_path(env.ids[1], k=20))
    want = one_process(env, "--like", env.ids[1], "--k", "20")
    need(status == 200 and blocks([reply]) == blocks([want]), "after the bad requests: %d %s" % (status, reply))
    status, reply = env.service.get("/health")
    objects = sum(count_objects(s) for s in env.stores)
    need(status == 200 and reply == {"status": "ok", "objects": objects, "stores": 4, "ranks": 4},
         "GET /health: %d %s" % (status, reply))
    status, reply = env.service.get("/spaces")
    counts = {s["name"]: s["count"] for s in reply["spaces"]}
    need(status == 200 and counts == {n: len(sp.ids) for n, sp in env.spaces.items()}, "GET /spaces: %s" % reply)


def count_objects(store):
    db = sqlite3.connect(os.path.join(ssf.generation(store), "catalog.sqlite"))
    return db.execute("SELECT COUNT(*) FROM objects").fetchone()[0]


@case("SIGTERM to rank 0: the requests end, every rank finalizes, mpirun exits 0")
def _(env):
    os.kill(env.service.rank0, signal.SIGTERM)
    code, seconds, err = env.service.wait(30)
    need(code == 0, "mpirun exit %s after SIGTERM to rank 0: %s" % (code, err[-1500:]))
    need("stopped" in err and seconds < 10, "%.1f s to stop: %s" % (seconds, err[-1500:]))


@case("a rank killed mid-service: its request is a 503 naming it, then the job ends non-zero within seconds")
def _(env):
    service = env.dying.ready()
    try:
        status, _ = service.get(like_path(env.ids[0], k=5))
        need(status == 200, "the first query failed: %d" % status)
        start = time.monotonic()
        status, reply = service.get(like_path(env.ids[1], k=5))
        need(status == 503 and "rank 2" in reply.get("error", ""), "the query meeting the dead rank: %d %s" %
             (status, reply))
        code, seconds, err = service.wait(20)
        need(code not in (0, None), "mpirun exit %s after rank 2 died: %s" % (code, err[-1500:]))
        need(time.monotonic() - start < 10, "the job took %.1f s to end" % (time.monotonic() - start))
    finally:
        service.kill()


# mpirun's own exit code is not checked: Open MPI 4.1 exits 1 for a job it was signalled to end, whatever its ranks do.
@case("SIGTERM to mpirun: every rank ends within seconds, no hang")
def _(env):
    service = env.stopping.ready()
    try:
        need(service.get("/health")[0] == 200, "not healthy")
        service.proc.send_signal(signal.SIGTERM)
        code, seconds, err = service.wait(20)
        need(code is not None and seconds < 8, "mpirun took %.1f s (exit %s): %s" % (seconds, code, err[-1500:]))
        need(not running(service.rank0), "rank 0 (pid %d) is still running" % service.rank0)
    finally:
        service.kill()


def running(pid):
    """Whether pid runs (a zombie that no one reaps has ended)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stop_services(env):
    for name in ("service", "dying", "stopping"):
        if hasattr(env, name):
            getattr(env, name).kill()


if __name__ == "__main__":
    sys.exit(run_mpi_cases(cases, setup, stop_services))
