"""MPI messages in pieces: with MMU_MPI_CHUNK_BYTES=1001 (tests only) every
message of `mpirun -n 3 mmu-search-mpi` (the queries broadcast, each rank's
answer, the setup) goes in pieces of at most 1001 bytes, cut mid-number, as a
message over 2 GiB goes in pieces of 512 MiB. The answers must equal one
process (`mmu-search --store x3`, itself checked against a brute force by
test_store_set.py), batch and --serve alike, and rank 0's count of pieces must
be what cutting its bytes at 1001 gives. A rank that stops halfway through its
answer is named with how much of it came; a bad chunk is refused by name.
Skipped (exit 77, reason printed) where mpirun or mmu-search-mpi is missing.
Run: test_mpi_pieces.py --bin BUILD --samples DIR --tmp DIR
"""
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import case_list, need, run  # noqa: E402
import store_set_fixtures as ssf  # noqa: E402
from test_mpi import MPIRUN, run_mpi_cases, store_flags  # noqa: E402
from test_mpi_serve import blocks  # noqa: E402
from test_serve import request  # noqa: E402

cases, case = case_list()
CHUNK = 1001  # odd: pieces end mid-int64 and mid-float


def chunk_env(value):
    env = dict(os.environ)
    env["MMU_MPI_CHUNK_BYTES"] = str(value)
    return env


def one_process(env, *args):
    return json.loads(run(env.search, *store_flags(env.stores), *args, "--format", "json").stdout)


def check_traffic(err, least_bytes):
    """Rank 0's note: its bytes went in exactly the pieces that cutting each message at CHUNK gives, within the
    bounds the per-message ceilings allow (sum of ceil(m_i / CHUNK) lies in
    [bytes / CHUNK, messages + bytes / CHUNK])."""
    need(("warning: MMU_MPI_CHUNK_BYTES=%d" % CHUNK) in err, "no warning about the chunk: %s" % err[-1500:])
    m = re.search(r"note: rank 0 moved (\d+) messages of (\d+) bytes in (\d+) pieces", err)
    need(m is not None, "no traffic note: %s" % err[-1500:])
    messages, nbytes, pieces = map(int, m.groups())
    need(nbytes >= least_bytes, "rank 0 moved %d bytes, fewer than the %d of the answers" % (nbytes, least_bytes))
    need(-(-nbytes // CHUNK) <= pieces <= messages + nbytes // CHUNK,
         "%d messages of %d bytes in %d pieces: not cut at %d bytes" % (messages, nbytes, pieces, CHUNK))


def setup(env):
    env.stores = ssf.twin_stores(env.index, env.samples, env.tmp, 3)
    spaces = [ssf.Space(env.stores, name) for name in ("image", "spectrum")]
    env.ids = random.Random(2031).sample([oid for sp in spaces for oid in sp.ids], 100)
    env.id_file = os.path.join(env.tmp, "ids.txt")
    with open(env.id_file, "w") as f:
        f.write("\n".join(env.ids) + "\n")
    # Started now, checked by its case: mpirun takes a second or two to start.
    cmd = MPIRUN + ["-n", "3", env.mpi_bin, *store_flags(env.stores), "--serve", "--port", "0", "--threads", "2"]
    env.service = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=chunk_env(CHUNK),
                                   start_new_session=True)


@case("batch: mpirun -n 3 with 1001-byte pieces equals one process for 100 queries (ids, scores, order)")
def _(env):
    args = [*store_flags(env.stores), "--like-file", env.id_file, "--k", "50", "--format", "json"]
    want = blocks(one_process(env, "--like-file", env.id_file, "--k", "50"))
    need(len(want) == 100 and all(not w[1] and len(w[3]) == 50 for w in want), "the one-process answer is incomplete")
    p = subprocess.run(MPIRUN + ["-n", "3", env.mpi_bin, *args], capture_output=True, text=True, timeout=120,
                       env=chunk_env(CHUNK))
    need(p.returncode == 0, "mpirun failed (%d): %s" % (p.returncode, p.stderr[-2000:]))
    got = blocks(json.loads(p.stdout))
    need(got == want, "mpirun -n 3 in pieces differs from one process (first difference at query %s)" %
         next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want))))
    # Each of the 2 other ranks answers 100 queries with at least 50 candidates of 12 bytes.
    check_traffic(p.stderr, 2 * 100 * 50 * 12)


@case("--serve: POST /batch and GET /like with 1001-byte pieces equal one process; SIGTERM stops it with exit 0")
def _(env):
    out, deadline = b"", time.monotonic() + 60
    while b"rank 0 is pid" not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([env.service.stderr], [], [], 1)
        chunk = os.read(env.service.stderr.fileno(), 65536) if ready else b""
        if ready and not chunk:
            break
        out += chunk
    text = out.decode(errors="replace")
    port = re.search(r"serving 3 stores over 3 ranks on http://127\.0\.0\.1:(\d+)", text)
    pid = re.search(r"rank 0 is pid (\d+)", text)
    need(port is not None and pid is not None, "the service did not start: %r" % text)
    url = "http://127.0.0.1:%s" % port.group(1)
    ids = env.ids[:40]
    id_file = os.path.join(env.tmp, "batch.txt")
    with open(id_file, "w") as f:
        f.write("\n".join(ids) + "\n")
    status, reply = request(url + "/batch", {"ids": ids, "k": 30})
    need(status == 200, "POST /batch: %d %s" % (status, reply))
    need(blocks(reply) == blocks(one_process(env, "--like-file", id_file, "--k", "30")),
         "POST /batch in pieces differs from --like-file")
    status, reply = request(url + "/like?id=%s&k=25" % env.ids[50])
    need(status == 200 and blocks([reply]) == blocks([one_process(env, "--like", env.ids[50], "--k", "25")]),
         "GET /like in pieces: %d %s" % (status, reply))
    os.kill(int(pid.group(1)), signal.SIGTERM)
    _, err = env.service.communicate(timeout=30)
    err = text + err.decode(errors="replace")
    need(env.service.returncode == 0,
         "mpirun exit %s after SIGTERM to rank 0: %s" % (env.service.returncode, err[-1500:]))
    check_traffic(err, 2 * 40 * 30 * 12)


@case("a rank that stops halfway through its answer: rank 0 names it and how much came after --rank-timeout")
def _(env):
    start = time.monotonic()
    p = subprocess.run(MPIRUN + ["-n", "3", env.mpi_bin, *store_flags(env.stores), "--like-file", env.id_file, "--k",
                                 "50", "--test-stall-rank", "2", "--rank-timeout", "1"],
                       capture_output=True, text=True, timeout=60, env=chunk_env(CHUNK))
    need(p.returncode != 0, "the job succeeded although rank 2 stopped mid-answer")
    need(time.monotonic() - start < 30, "the job took %.1f s to end" % (time.monotonic() - start))
    m = re.search(r"rank 2 \(stores 2\) sent (\d+) of the (\d+) bytes it announced and no more within 1 s "
                  r"\(--rank-timeout\)", p.stderr)
    need(m is not None, "rank 2 is not named as stopping mid-answer: %s" % p.stderr[-1500:])
    need(int(m.group(1)) == CHUNK and int(m.group(2)) > 2 * CHUNK,
         "rank 2 sent %s of %s bytes: not the first piece of an answer of several" % m.groups())


# (Each bad value is refused by unit.MMU_MPI_CHUNK_BYTES*: here, that every rank reads it and ends.)
@case("a bad MMU_MPI_CHUNK_BYTES is refused naming the variable, every rank ends")
def _(env):
    for value in ("12x",):
        start = time.monotonic()
        p = subprocess.run(MPIRUN + ["-n", "3", env.mpi_bin, *store_flags(env.stores), "--like", env.ids[0]],
                           capture_output=True, text=True, timeout=60, env=chunk_env(value))
        need(p.returncode != 0 and ("MMU_MPI_CHUNK_BYTES='%s'" % value) in p.stderr,
             "MMU_MPI_CHUNK_BYTES=%s: rc %d, %s" % (value, p.returncode, p.stderr[-1500:]))
        need(time.monotonic() - start < 30, "MMU_MPI_CHUNK_BYTES=%s: %.1f s to end" % (value, time.monotonic() - start))


def stop_service(env):
    if hasattr(env, "service") and env.service.poll() is None:
        os.killpg(env.service.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(run_mpi_cases(cases, setup, stop_service))
