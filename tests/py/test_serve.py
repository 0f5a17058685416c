"""End-to-end check of `mmu-search serve`: concurrent clients get exactly the
results `mmu-search --format json` prints for the same queries; request
limits, errors, the loopback default and a clean stop on SIGTERM.
Run: test_serve.py --bin BUILD --samples DIR --tmp DIR
"""
import concurrent.futures
import gzip
import json
import os
import random
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CaseFailure, binaries_samples_tmp, need, run_cases  # noqa: E402


def run(cmd, ok=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if ok and p.returncode != 0:
        raise CaseFailure(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p


class Server:
    """A `mmu-search serve` on a free port; url() after start()."""

    def __init__(self, search, store, *extra):
        self.cmd = [search, "serve", "--store", store, "--port", "0", *extra]
        self.proc = None
        self.port = None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stderr], [], [], 30)
        line = self.proc.stderr.readline() if ready else ""
        need(line.startswith("serving store ") and "http://127.0.0.1:" in line, f"start line: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        return self

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        """SIGTERM; returns (exit code, rest of stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            return None, err
        return self.proc.returncode, err


def request(url, body=None, data=None):
    """(HTTP status, parsed JSON reply) of a GET (body None) or a POST."""
    if body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def same_result(expected, got, label):
    """One query's block: the same objects, ranks and scores (and everything else but the label)."""
    if "error" in expected:
        need(got.get("error") == expected["error"], f"{label}: error {got.get('error')!r} vs {expected['error']!r}")
        return
    for key in ("query", "space", "method", "k", "positives", "negatives", "near_sep_arcsec", "note"):
        need(expected.get(key) == got.get(key), f"{label}: {key} {got.get(key)!r} vs CLI {expected.get(key)!r}")
    e, g = expected["results"], got["results"]
    need(len(e) == len(g), f"{label}: {len(g)} results, CLI has {len(e)}")
    for a, b in zip(e, g):
        need((a["rank"], a["object_id"], a["survey"], a["score"]) == (b["rank"], b["object_id"], b["survey"], b["score"]),
             f"{label}: rank {a['rank']}: server {b} vs CLI {a}")


def setup(env):
    a, index, search = binaries_samples_tmp()
    env.update(tmp=a.tmp, search=search, store=os.path.join(a.tmp, "store"))
    run([index, "build", a.samples, "--store", env["store"], "--quiet"])
    with open(os.path.join(env["store"], "CURRENT")) as f:
        db = sqlite3.connect(os.path.join(env["store"], f.read().strip(), "catalog.sqlite"))
    env["objects"] = {}
    for space in ("image", "spectrum"):
        env["objects"][space] = db.execute(
            "SELECT o.object_id, o.survey, o.ra, o.dec FROM space_rows s JOIN objects o ON o.row = s.row "
            "WHERE s.space = ? ORDER BY s.vrow", (space,)).fetchall()
    # 12 client threads open a new connection per request; under load the server notices a closed one a
    # moment late, so the default bound of 16 per client could refuse one (py.serve_abuse tests the bound).
    env["server"] = Server(search, env["store"], "--threads", "4", "--max-per-client", "64").start()


def query_cases(env):
    """(name, endpoint, request body or None, CLI arguments) for a spread of queries."""
    cases = []
    img, spec = env["objects"]["image"], env["objects"]["spectrum"]
    for space, objs in (("image", img), ("spectrum", spec)):
        for i in np.linspace(0, len(objs) - 1, 5).astype(int):
            oid, survey, ra, dec = objs[i]
            for k in (1, 7, 200):
                cases.append((f"GET /like {oid} k={k}", f"/like?id={oid}&k={k}&survey={survey}", None,
                              ["--like", oid, "--survey", survey, "--k", str(k)]))
            cases.append((f"POST /query {oid} in cone", "/query",
                          {"like": oid, "survey": survey, "k": 5, "cone": {"ra": ra, "dec": dec, "radius_deg": 40}},
                          ["--like", oid, "--survey", survey, "--k", "5", "--cone", f"{ra!r},{dec!r},40deg"]))
            cases.append((f"POST /query near {oid}", "/query",
                          {"near": {"ra": ra, "dec": dec, "radius_arcsec": 3}, "k": 4, "space": space},
                          ["--near", f"{ra!r},{dec!r}", "--radius", "3arcsec", "--k", "4", "--space", space]))
    pair = [img[0][0], img[1][0]]
    cases.append(("POST /query mean minus", "/query",
                  {"like": pair, "unlike": img[2][0], "unlike_weight": 0.3, "k": 6, "dedup_arcsec": 1, "exact": True},
                  ["--like", pair[0], "--like", pair[1], "--unlike", img[2][0], "--unlike-weight", "0.3", "--k", "6",
                   "--dedup", "1", "--exact"]))
    cases.append(("POST /query where", "/query", {"like": spec[3][0], "k": 10, "where": "Z < 0.5", "in": ["desi"]},
                  ["--like", spec[3][0], "--k", "10", "--where", "Z < 0.5", "--in", "desi"]))
    spaces = {s["name"]: s for s in request(env["server"].url("/spaces"))[1]["spaces"]}
    vec = np.random.default_rng(7).standard_normal(spaces["image"]["dim"]).astype(np.float32)
    npy = os.path.join(env["tmp"], "q.npy")
    np.save(npy, vec)
    cases.append(("POST /query vector", "/query", {"vector": [float(x) for x in vec], "k": 9},
                  ["--vector", npy, "--k", "9"]))
    return cases


def case_concurrent_equals_cli(env):
    cases = query_cases(env)
    expected = {name: json.loads(run([env["search"], "--store", env["store"], "--format", "json", *args]).stdout)
                for name, _, _, args in cases}
    work = cases * 4
    random.Random(1).shuffle(work)
    server = env["server"]

    def ask(case):
        name, path, body, _ = case
        return name, request(server.url(path), body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(ask, work))
    need(len(replies) == len(work), "every request answered")
    for name, (status, got) in replies:
        need(status == 200, f"{name}: HTTP {status}: {got}")
        same_result(expected[name], got, name)


def case_batch_equals_like_file(env):
    ids = [o[0] for o in env["objects"]["image"][:5]] + ["no-such-id"]
    path = os.path.join(env["tmp"], "ids.txt")
    with open(path, "w") as f:
        f.write("\n".join(ids) + "\n")
    cli = run([env["search"], "--store", env["store"], "--format", "json", "--like-file", path, "--k", "3"], ok=False)
    status, got = request(env["server"].url("/batch"), {"ids": ids, "k": 3})
    need(status == 200, f"/batch: HTTP {status}: {got}")
    expected = json.loads(cli.stdout)
    need(len(got) == len(expected) == len(ids), f"/batch: {len(got)} blocks for {len(ids)} ids")
    for e, g in zip(expected, got):
        same_result(e, g, f"/batch {e['label']}")
    need("error" in got[-1], "/batch: the unknown id's block carries its error")


def case_health_and_spaces(env):
    status, h = request(env["server"].url("/health"))
    need(status == 200 and h["status"] == "ok", f"/health: {status} {h}")
    need(h["objects"] == len(env["objects"]["image"]) + len(env["objects"]["spectrum"]), f"/health: {h}")
    status, s = request(env["server"].url("/spaces"))
    names = [x["name"] for x in s["spaces"]]
    need(status == 200 and names == ["image", "spectrum"], f"/spaces: {status} {s}")
    need(s["spaces"][0]["count"] == len(env["objects"]["image"]), f"/spaces count: {s}")


def expect_error(env, path, body, status, *words, data=None):
    got_status, got = request(env["server"].url(path), body, data=data)
    need(got_status == status, f"{path} {body if data is None else '<data>'}: HTTP {got_status}, expected {status}: {got}")
    for w in words:
        need(w in got.get("error", ""), f"{path}: error {got.get('error')!r} does not say {w!r}")


def case_limits_and_errors(env):
    oid = env["objects"]["image"][0][0]
    expect_error(env, "/query", {"like": oid, "k": 10001}, 400, "'k'", "10000")
    expect_error(env, "/like?id=" + oid + "&k=10001", None, 400, "'k'")
    expect_error(env, "/query", {"like": oid, "colour": "red"}, 400, "unknown field 'colour'")
    expect_error(env, "/query", {"like": oid, "k": "5"}, 400, "field 'k' must be an integer")
    expect_error(env, "/query", None, 400, "not valid JSON", data=b'{"like": ')
    expect_error(env, "/query", None, 400, "not valid JSON", data=b"\xff\xfe")
    expect_error(env, "/query", {"like": "no-such-id"}, 404, "no-such-id")
    expect_error(env, "/like?id=no-such-id", None, 404, "no-such-id")
    expect_error(env, "/query", {"like": oid, "space": "no-such-space"}, 404, "no-such-space")
    expect_error(env, "/batch", {"ids": [oid] * 1001}, 400, "'ids'", "1000")
    expect_error(env, "/query", None, 413, "--max-body", data=b" " * (1024 * 1024 + 1))
    expect_error(env, "/nowhere", None, 404, "no endpoint")
    # A large body is read whatever its Content-Type says (urllib sends form-encoded).
    status, got = request(env["server"].url("/query"), {"like": oid, "k": 3, "space": "image" + " " * 20000})
    need(status == 404 and "image" in got["error"], f"20 kB form-encoded body: {status} {got}")
    gzipped = urllib.request.Request(env["server"].url("/query"), method="POST",
                                     data=gzip.compress(b"[" * (1024 * 1024 * 4)),
                                     headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(gzipped, timeout=60)
        need(False, "a gzip body expanding past --max-body was answered 200")
    except urllib.error.HTTPError as e:
        need(e.code == 413, f"gzip body expanding past --max-body: HTTP {e.code}")
    # The server still answers after all of that.
    status, _ = request(env["server"].url("/health"))
    need(status == 200, "/health after bad requests")


def case_no_file_access(env):
    oid = env["objects"]["image"][0][0]
    secret = os.path.join(env["tmp"], "ids.txt")
    with open(secret, "w") as f:
        f.write(oid + "\n")
    expect_error(env, "/query", {"vector_file": os.path.join(env["tmp"], "q.npy"), "k": 3}, 400,
                 "'vector_file' is not accepted", "never reads files")
    expect_error(env, "/query", {"like_file": secret}, 400, "'like_file' is not accepted")
    expect_error(env, "/batch", {"like_file": secret}, 400, "'like_file' is not accepted")
    expect_error(env, "/query", {"like": oid, "store": "/"}, 400, "'store' is not accepted")
    expect_error(env, f"/like?id={oid}&vector_file={secret}", None, 400, "unknown parameter 'vector_file'")
    # No static files are served, whatever the path.
    for path in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/CURRENT"):
        with socket.create_connection(("127.0.0.1", env["server"].port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        need(b"root:" not in reply and b"gen-" not in reply and reply.split(b" ")[1] in (b"400", b"404"),
             f"GET {path}: {reply[:200]!r}")


def case_loopback_only(env):
    """Every listening socket on the server's port is 127.0.0.1's (from /proc/net/tcp)."""
    port = env["server"].port
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.split(":")
                if int(p, 16) == port and state == "0A":
                    listening.append(addr)
    need(listening == ["0100007F"], f"port {port} listens on {listening} (hex), expected only 127.0.0.1")


def case_bad_flags(env):
    p = run([env["search"], "serve", "--store", os.path.join(env["tmp"], "absent")], ok=False)
    need(p.returncode == 1 and "no store at" in p.stderr, f"absent store: {p.returncode} {p.stderr}")
    p = run([env["search"], "serve", "--store", env["store"], "--max-body", "lots"], ok=False)
    need(p.returncode == 1 and "--max-body" in p.stderr, f"--max-body lots: {p.returncode} {p.stderr}")
    p = run([env["search"], "serve", "--store", env["store"], "--port", str(env["server"].port)], ok=False)
    need(p.returncode == 1 and "--port" in p.stderr, f"port in use: {p.returncode} {p.stderr}")
    p = run([env["search"], "serve", "--store", env["store"], "--threads", "0"], ok=False)
    need(p.returncode == 2 and "--threads" in p.stderr, f"--threads 0: {p.returncode} {p.stderr}")


def case_small_limits(env):
    s = Server(env["search"], env["store"], "--max-k", "5", "--max-body", "100", "--max-ids", "2").start()
    try:
        oid = env["objects"]["image"][0][0]
        status, got = request(s.url("/query"), {"like": oid, "k": 6})
        need(status == 400 and "between 1 and 5" in got["error"], f"--max-k 5: {status} {got}")
        status, got = request(s.url("/query"), {"like": oid, "k": 5, "where": "Z < 1" + " " * 100})
        need(status == 413, f"--max-body 100: {status} {got}")
        status, got = request(s.url("/batch"), {"ids": [oid] * 3})
        need(status == 400 and "'ids'" in got["error"], f"--max-ids 2: {status} {got}")
    finally:
        s.stop()


def case_sigterm_stops(env):
    s = Server(env["search"], env["store"]).start()
    time.sleep(0.2)
    code, err = s.stop()
    need(code == 0, f"exit code after SIGTERM: {code} ({err})")
    s = Server(env["search"], env["store"]).start()
    s.proc.send_signal(signal.SIGINT)
    code, err = s.stop()
    need(code == 0, f"exit code after SIGINT: {code} ({err})")


CASES = [
    ("concurrent clients get the CLI's results", case_concurrent_equals_cli),
    ("/batch equals --like-file", case_batch_equals_like_file),
    ("/health and /spaces", case_health_and_spaces),
    ("limits and errors", case_limits_and_errors),
    ("no request reads a file", case_no_file_access),
    ("listens on 127.0.0.1 only by default", case_loopback_only),
    ("bad serve flags", case_bad_flags),
    ("--max-k, --max-body, --max-ids", case_small_limits),
    ("SIGTERM and SIGINT stop it cleanly", case_sigterm_stops),
]


def main():
    env = {}
    try:
        return run_cases(CASES, env, setup)
    finally:
        if env.get("server") and env["server"].proc:
            env["server"].stop()


if __name__ == "__main__":
    sys.exit(main())
