"""Readers during rebuilds (issue 16 point 2): CLI queries (`mmu-search
--like`) and HTTP queries (GET /like on one `mmu-search serve`) run without
pause while the store is rebuilt again and again. Every rebuild K writes
the same images with every object's ra moved by K * STEP_DEG, so an answer
names its generation through its ras: each answer must succeed and all its
ras (query and results) must name one generation. After each rebuild the
server must answer from the new generation within SWITCH_S of the build's
exit (the commit is its last step).
Run: /usr/bin/python3 bench/readers_during_rebuilds.py --bin BUILD --tmp DIR
     [--cli 5000 --http 5000 --rebuilds 50]
tests/py/test_readers_rebuild.py runs the same logic with smaller counts.
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
import mmu_fixtures as fx  # noqa: E402

N_OBJECTS = 8
STEP_DEG = 1e-4  # ra shift per generation; 400 generations stay inside the fixture's HEALPix cell
SWITCH_S = 1.0
K = 5


def write_generation(root, k):
    """The image file of generation k (written aside, then renamed into place)."""
    d = fx.image_datasets(n=N_OBJECTS, seed=1)
    d["ra"] = d["ra"] + k * STEP_DEG
    path = fx.mmu_path(root, fx.IMAGE_SURVEY)
    tmp = fx.write_mmu_file(path + ".part", d)
    os.replace(tmp, path)
    return d


def generation_of(answer, base_ra):
    """The one generation every ra of a JSON answer names, or raises ValueError saying why not."""
    objects = [answer["query"]] + answer["results"]
    gens = set()
    for o in objects:
        if o["object_id"] not in base_ra:
            raise ValueError(f"unknown object {o['object_id']!r}")
        g = (o["ra"] - base_ra[o["object_id"]]) / STEP_DEG
        if abs(g - round(g)) > 1e-3:
            raise ValueError(f"ra {o['ra']} of {o['object_id']} names no generation")
        gens.add(round(g))
    if len(gens) != 1 or len(answer["results"]) != K:
        raise ValueError(f"answer mixes generations {sorted(gens)} or has {len(answer['results'])} results")
    return gens.pop()


class Tally:
    """Counts and failures of one kind of reader, shared by its threads."""

    def __init__(self, name):
        self.name, self.lock, self.done, self.failures, self.gens = name, threading.Lock(), 0, [], set()

    def record(self, gen=None, failure=None):
        with self.lock:
            self.done += 1
            if failure is not None:
                self.failures.append(failure)
            else:
                self.gens.add(gen)


def start_server(search, store):
    proc = subprocess.Popen([search, "serve", "--store", store, "--port", "0", "--threads", "2"],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if "http://127.0.0.1:" not in line:
        proc.kill()
        raise RuntimeError(f"serve did not start: {line!r}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain warnings
    return proc, int(line.strip().rsplit(":", 1)[1])


def http_like(conn_box, port, oid):
    """(status, body) of GET /like on a kept-alive connection, reconnecting once if it was closed."""
    for attempt in range(2):
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn_box[0].request("GET", f"/like?id={oid}&k={K}")
            r = conn_box[0].getresponse()
            return r.status, r.read()
        except (http.client.HTTPException, OSError):
            conn_box[0].close()
            conn_box[0] = None
            if attempt == 1:
                raise
    return None, b""


def run(index, search, tmp, cli_target, http_target, rebuilds, cli_threads=2, http_threads=2, log=print):
    """Runs the whole experiment; returns a dict of figures and the list of failures."""
    shutil.rmtree(tmp, ignore_errors=True)
    root, store = os.path.join(tmp, "data"), os.path.join(tmp, "store")
    base = write_generation(root, 0)
    ids = [x.decode() for x in base["object_id"]]
    base_ra = dict(zip(ids, (float(r) for r in base["ra"])))
    subprocess.run([index, "build", root, "--store", store, "--quiet"], check=True, capture_output=True)
    server, port = start_server(search, store)
    cli, web = Tally("cli"), Tally("http")
    stop = threading.Event()
    started = [0]  # rebuilds started so far

    def wait_for_quota(tally, target):
        """Readers keep pace with the rebuilds (at most (started + 1) / rebuilds of their count
        so far), so that the counts spread over all of them and no CPU goes to queries past it."""
        while not stop.is_set() and tally.done >= target * min(started[0] + 1, rebuilds) / rebuilds:
            time.sleep(0.002)

    def cli_worker(w):
        i = w
        while not stop.is_set():
            wait_for_quota(cli, cli_target)
            oid = ids[i % len(ids)]
            i += 1
            p = subprocess.run([search, "--store", store, "--like", oid, "--k", str(K), "--format", "json"],
                               capture_output=True, text=True)
            try:
                if p.returncode != 0:
                    raise ValueError(f"exit {p.returncode}: {p.stderr.strip()[:300]}")
                cli.record(gen=generation_of(json.loads(p.stdout), base_ra))
            except ValueError as e:
                cli.record(failure=f"cli --like {oid}: {e}")

    def http_worker(w):
        i, box = w, [None]
        while not stop.is_set():
            wait_for_quota(web, http_target)
            oid = ids[i % len(ids)]
            i += 1
            try:
                status, body = http_like(box, port, oid)
                if status != 200:
                    raise ValueError(f"HTTP {status}: {body[:300]!r}")
                web.record(gen=generation_of(json.loads(body), base_ra))
            except (ValueError, OSError, http.client.HTTPException) as e:
                web.record(failure=f"GET /like {oid}: {e}")

    threads = [threading.Thread(target=cli_worker, args=(w,)) for w in range(cli_threads)]
    threads += [threading.Thread(target=http_worker, args=(w,)) for w in range(http_threads)]
    for t in threads:
        t.start()
    switch_s, build_s, failures = [], [], []
    probe = [None]
    t0 = time.monotonic()
    k = 0
    try:
        while k < rebuilds:
            k += 1
            # Paced so that the queries spread over the rebuilds: rebuild k
            # starts once k/rebuilds of each count is reached, so all of them
            # are answered before the last rebuild ends.
            while (cli.done < cli_target * k / rebuilds or web.done < http_target * k / rebuilds) and \
                    all(t.is_alive() for t in threads):
                time.sleep(0.002)
            started[0] = k
            write_generation(root, k)
            b0 = time.monotonic()
            p = subprocess.run([index, "build", root, "--store", store, "--quiet", "--refit"],
                               capture_output=True, text=True)
            built = time.monotonic()
            build_s.append(built - b0)
            if p.returncode != 0:
                failures.append(f"rebuild {k}: exit {p.returncode}: {p.stderr.strip()[:300]}")
                break
            # The server must answer from generation k within SWITCH_S of the commit.
            while True:
                try:
                    status, body = http_like(probe, port, ids[0])
                    answered = generation_of(json.loads(body), base_ra) if status == 200 else None
                except (ValueError, OSError, http.client.HTTPException) as e:
                    status, answered = str(e), None
                waited = time.monotonic() - built
                if answered == k:
                    switch_s.append(waited)
                    break
                if waited > SWITCH_S:
                    failures.append(f"rebuild {k}: the server still answers from another generation "
                                    f"{waited:.2f} s after the commit (HTTP {status})")
                    switch_s.append(waited)
                    break
                time.sleep(0.005)
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.terminate()
        server.wait(timeout=30)
    elapsed = time.monotonic() - t0
    failures += cli.failures + web.failures
    figures = {
        "rebuilds": k, "seconds": round(elapsed, 1), "cli_queries": cli.done, "cli_failures": len(cli.failures),
        "http_queries": web.done, "http_failures": len(web.failures),
        "generations_answered_cli": len(cli.gens), "generations_answered_http": len(web.gens),
        "build_s_median": round(sorted(build_s)[len(build_s) // 2], 3) if build_s else None,
        "switch_s_max": round(max(switch_s), 3) if switch_s else None,
        "switch_s_median": round(sorted(switch_s)[len(switch_s) // 2], 3) if switch_s else None,
        "generation_folders_left": sorted(n for n in os.listdir(store) if n.startswith("gen-")),
    }
    log(json.dumps(figures))
    return figures, failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--cli", type=int, default=5000)
    ap.add_argument("--http", type=int, default=5000)
    ap.add_argument("--rebuilds", type=int, default=50)
    a = ap.parse_args()
    if not 1 <= a.rebuilds <= 400:
        ap.error("--rebuilds must be 1..400 (the ra shift must stay inside the fixture's cell)")
    figures, failures = run(os.path.join(a.bin, "mmu-index"), os.path.join(a.bin, "mmu-search"), a.tmp,
                            a.cli, a.http, a.rebuilds)
    for f in failures[:20]:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
