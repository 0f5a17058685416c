"""End-to-end check that no client can stall `mmu-search serve`: with 32 raw
loopback sockets sending request headers at 1 byte/s or idling after a
keep-alive request, /health and a /like query (compared with the CLI's
--format json) each answer in under a second; the slow ones are cut at
--timeout and the idle ones at --idle-timeout; connections past
--max-per-client and --max-connections get a 503 at once; the server
answers correctly afterwards. Clients use several loopback source addresses
(127.0.0.2...), which Linux routes to lo, to stand for several clients.
Run: test_serve_abuse.py --bin BUILD --samples DIR --tmp DIR
"""
import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CaseFailure, binaries_samples_tmp, need, run, run_cases  # noqa: E402

TIMEOUT_S = 4        # --timeout: a whole request must arrive within it
IDLE_S = 3           # --idle-timeout
PER_CLIENT = 8       # --max-per-client
MAX_CONNECTIONS = 40  # --max-connections
FAST_S = 1.0         # what a request may take while the others are open


class Server:
    """A `mmu-search serve` on a free loopback port."""

    def __init__(self, search, store):
        self.proc = subprocess.Popen(
            [search, "serve", "--store", store, "--port", "0", "--threads", "2", "--timeout", str(TIMEOUT_S),
             "--idle-timeout", str(IDLE_S), "--max-per-client", str(PER_CLIENT),
             "--max-connections", str(MAX_CONNECTIONS)], stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stderr], [], [], 30)
        line = self.proc.stderr.readline() if ready else ""
        need("http://127.0.0.1:" in line, f"start line: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def get(env, path):
    """(seconds, HTTP status, parsed JSON) of a GET from 127.0.0.1."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{env['server'].port}{path}", timeout=30) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    return time.monotonic() - t0, status, json.loads(body)


def connect(env, source):
    s = socket.create_connection(("127.0.0.1", env["server"].port), timeout=5, source_address=(source, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close at once
    return s


def closed_within(sock, seconds):
    """What the server sent before closing `sock`, or None if it is still open after `seconds`."""
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return got
            got += chunk
    except socket.timeout:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return got


class SlowClient(threading.Thread):
    """Sends a request's header bytes one per second; records when the server cuts it."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.started, self.cut_after, self.reply = sock, time.monotonic(), None, None

    def run(self):
        header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
        for b in header:
            try:
                self.sock.send(bytes([b]))
            except OSError:
                break
            r, _, _ = select.select([self.sock], [], [], 1.0)
            if r:  # the server's reply or its close: either way the server is done with it
                try:
                    self.reply = self.sock.recv(4096)
                except OSError as e:
                    self.reply = repr(e)
                break
        self.cut_after = time.monotonic() - self.started


def setup(env):
    a, index, search = binaries_samples_tmp()
    store = os.path.join(a.tmp, "store")
    run(index, "build", a.samples, "--store", store, "--quiet")
    with open(os.path.join(store, "CURRENT")) as f:
        db = sqlite3.connect(os.path.join(store, f.read().strip(), "catalog.sqlite"))
    env["ids"] = [r[0] for r in db.execute("SELECT object_id FROM objects ORDER BY row")]
    env["oid"] = env["ids"][0]
    env["expected"] = json.loads(run(search, "--store", store, "--like", env["oid"], "--k", "5",
                                     "--format", "json").stdout)
    env["server"] = Server(search, store)


def check_answers(env, why):
    """/health and /like answer correctly, each in under FAST_S."""
    took, status, body = get(env, "/health")
    need(status == 200 and body.get("status") == "ok", f"{why}: /health answered {status} {body}")
    need(took < FAST_S, f"{why}: /health took {took:.2f} s")
    took, status, body = get(env, f"/like?id={env['oid']}&k=5")
    need(status == 200, f"{why}: /like answered {status} {body}")
    need(body["results"] == env["expected"]["results"], f"{why}: /like results {body['results']} "
         f"differ from the CLI's {env['expected']['results']}")
    need(took < FAST_S, f"{why}: /like took {took:.2f} s")


def case_slow_and_idle_clients(env):
    check_answers(env, "before any abuse")
    slow, idle = [], []
    try:
        for source in ("127.0.0.2", "127.0.0.3"):  # 16 clients dribbling header bytes
            for _ in range(PER_CLIENT):
                slow.append(SlowClient(connect(env, source)))
        for c in slow:
            c.start()
        for source in ("127.0.0.4", "127.0.0.5"):  # 16 idle after a keep-alive request
            for _ in range(PER_CLIENT):
                s = connect(env, source)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
                s.settimeout(5)
                reply = b""
                while b'"status": "ok"' not in reply and len(reply) < 4096:
                    chunk = s.recv(4096)
                    need(chunk, f"a keep-alive client's /health reply: {reply!r}")
                    reply += chunk
                idle.append((s, time.monotonic()))
        for round_ in range(3):
            check_answers(env, f"with 32 slow or idle clients open (round {round_ + 1})")
            need(all(c.cut_after is None for c in slow), "the slow clients were cut before the answers were "
                 f"timed: {[(c.cut_after, c.reply) for c in slow if c.cut_after is not None]}")
            time.sleep(0.2)
        for s, since in idle:  # kept-alive connections end after --idle-timeout, not later
            need(closed_within(s, max(0.01, IDLE_S + 1.5 - (time.monotonic() - since))) is not None,
                 f"an idle keep-alive connection was still open {IDLE_S + 1.5} s after its reply")
            need(time.monotonic() - since >= IDLE_S - 0.5, "an idle connection was closed before --idle-timeout")
        for c in slow:  # a byte a second does not keep a request alive past --timeout
            c.join(TIMEOUT_S + 3)
            need(c.cut_after is not None, f"a slow client was still open {TIMEOUT_S + 3} s after it connected")
            need(TIMEOUT_S - 0.5 <= c.cut_after <= TIMEOUT_S + 1.5,
                 f"a slow client was cut after {c.cut_after:.1f} s, --timeout is {TIMEOUT_S}")
        check_answers(env, "after the slow clients were cut")
    finally:
        for c in slow:
            c.sock.close()
        for s, _ in idle:
            s.close()


def refused(sock, why):
    reply = closed_within(sock, FAST_S)
    need(reply is not None and reply.startswith(b"HTTP/1.1 503") and b"--max-" in reply,
         f"{why} was not refused with a 503 within {FAST_S} s: {reply!r}")


def case_per_client_bound(env):
    socks = []
    try:
        socks = [connect(env, "127.0.0.6") for _ in range(PER_CLIENT)]
        extra = connect(env, "127.0.0.6")
        t0 = time.monotonic()
        refused(extra, f"connection {PER_CLIENT + 1} from one address")
        need(time.monotonic() - t0 < FAST_S, "the refusal took more than a second")
        extra.close()
        need(all(closed_within(s, 0.05) is None for s in socks), f"the first {PER_CLIENT} connections were closed")
        check_answers(env, f"with {PER_CLIENT} connections open from 127.0.0.6")
    finally:
        for s in socks:
            s.close()


def case_total_bound(env):
    socks = []
    try:
        sources = [f"127.0.0.{10 + i}" for i in range(MAX_CONNECTIONS // PER_CLIENT)]
        socks = [connect(env, src) for src in sources for _ in range(PER_CLIENT)]
        extra = connect(env, "127.0.0.30")
        t0 = time.monotonic()
        refused(extra, f"connection {MAX_CONNECTIONS + 1}")
        need(time.monotonic() - t0 < FAST_S, "the refusal took more than a second")
        extra.close()
        need(all(closed_within(s, 0.01) is None for s in socks), f"the first {MAX_CONNECTIONS} were closed")
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)  # the server sees them closed
    check_answers(env, "after the connections were closed")


def case_slow_reader(env):
    """A client reading its (large) reply at 4 KB/s, which keeps every single write going, is cut at
    --timeout, and delays no one meanwhile."""
    ids = (env["ids"] * 1000)[:1000]
    body = json.dumps({"ids": ids, "k": 100}).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the reply waits in the server's send buffer
    s.connect(("127.0.0.1", env["server"].port))
    try:
        s.sendall(b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        # The deadline restarts once the answer is computed (its first bytes arrive), which
        # on a loaded machine can take seconds: the cut is timed from there.
        t0, reply, ended = time.monotonic(), b"", False
        s.settimeout(0.25)
        while not ended and (not reply or time.monotonic() - t0 < TIMEOUT_S + 2) and time.monotonic() - t0 < 60:
            try:
                chunk = s.recv(1000)
                if chunk and not reply:
                    t0 = time.monotonic()
                reply += chunk
                ended = not chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                ended = True
            if 0.5 < time.monotonic() - t0 < 0.8:
                check_answers(env, "with a client reading its reply slowly")
            time.sleep(0.25)
        head, _, got = reply.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            send_buffer = int(f.read().split()[2])
        need(length > send_buffer, f"the reply ({length} bytes) must exceed the largest send buffer ({send_buffer})")
        need(ended, f"a client reading {len(got)} of {length} bytes in {TIMEOUT_S + 2} s was not cut "
             f"(--timeout {TIMEOUT_S})")
        need(len(got) < length, "the whole reply was sent")
        took = time.monotonic() - t0
        need(took >= TIMEOUT_S - 0.5, f"the slow reader was cut after {took:.1f} s, before --timeout {TIMEOUT_S}")
    finally:
        s.close()


def case_stops_cleanly(env):
    socks = [connect(env, "127.0.0.7") for _ in range(4)]  # mid-request and idle: not waited for
    try:
        for s in socks[:2]:
            s.send(b"GET /hea")
        time.sleep(0.2)
        t0 = time.monotonic()
        code = env["server"].stop()
        need(code == 0, f"exit code after SIGTERM: {code}")
        need(time.monotonic() - t0 < 2, f"SIGTERM took {time.monotonic() - t0:.1f} s with clients open")
    finally:
        for s in socks:
            s.close()


CASES = [
    ("32 slow or idle clients delay nothing; cut at --timeout / --idle-timeout", case_slow_and_idle_clients),
    ("--max-per-client refuses the next connection at once", case_per_client_bound),
    ("--max-connections refuses the next connection at once", case_total_bound),
    ("a client reading its reply slowly is cut at --timeout", case_slow_reader),
    ("SIGTERM stops it at once with clients open", case_stops_cleanly),
]


def main():
    env = {}
    try:
        return run_cases(CASES, env, setup)
    finally:
        if env.get("server"):
            env["server"].stop()


if __name__ == "__main__":
    sys.exit(main())
