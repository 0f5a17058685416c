#!/usr/bin/python3
"""The gallery's speed (issue 17), against its stated bounds:

  1. a page of 50 neighbours with their cutouts (and linked spectra) complete
     in <= 1 s, measured by the browser (headless Debian chromium): from the
     navigation's start to the last card drawn, on a freshly started server
     (no cutout cached);
  2. >= 200 cutouts/s rendered from LZF-compressed legacysurvey files: every
     image object of the store fetched once per size (so each is a cache miss:
     read, colour, PNG), by one client and by four at once.

    /usr/bin/python3 bench/gallery_bench.py --build build [--data DIR ...] [--n N] [--work DIR] [--runs 5]

--data: MMU folders to build the store from (default data/samples); --n N:
instead, generate N galaxies with tools/make_samples.py (seed 7, as make demo).
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
import test_gallery as tg  # noqa: E402  (its server and browser helpers)

PAGE_BOUND_S = 1.0
CUTOUT_BOUND = 200.0


def cpu_seconds(pid):
    """User + system CPU time of a process so far (the machine is shared: CPU time, unlike wall time, is not
    inflated by other load)."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Where the page's time goes, by the browser's Navigation and Resource Timing: per kind of request, how
# many, when the first started and the last ended (ms from navigation start), and the median time each
# waited before its request was sent (queued: for a connection, behind the others) and was then served.
TIMING_JS = """
const nav = performance.getEntriesByType('navigation')[0];
const rows = [{kind: 'document', start: 0, sent: nav.requestStart, end: nav.responseEnd}];
for (const r of performance.getEntriesByType('resource')) {
  const path = new URL(r.name).pathname;
  const kind = path.startsWith('/assets/') ? 'assets' : '/' + path.split('/')[1].replace(/\\..*$/, '');
  rows.push({kind: kind, start: r.startTime, sent: r.requestStart || r.startTime, end: r.responseEnd});
}
const drawn = [...document.querySelectorAll('#grid .card')].map((c) => Number(c.dataset.drawnAt));
return {rows: rows, scripts_done: nav.domContentLoadedEventEnd, last_card: Math.max(...drawn)};
"""


def timing_breakdown(t):
    kinds = {}
    for r in t["rows"]:
        kinds.setdefault(r["kind"], []).append(r)
    lines = []
    for kind, rs in sorted(kinds.items(), key=lambda kv: min(r["start"] for r in kv[1])):
        lines.append("     %-12s %3d  %6.0f .. %6.0f ms   queued %5.1f ms, served %5.1f ms (medians)" % (
            kind, len(rs), min(r["start"] for r in rs), max(r["end"] for r in rs),
            statistics.median(r["sent"] - r["start"] for r in rs), statistics.median(r["end"] - r["sent"] for r in rs)))
    lines.append("     scripts done at %.0f ms; last card drawn at %.0f ms" % (t["scripts_done"], t["last_card"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--data", nargs="*", default=[os.path.join(HERE, "..", "data", "samples")])
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--work", default="/tmp/mmu-gallery-bench")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    data = a.data
    if a.n:
        out = os.path.join(a.work, "data-n%d" % a.n)
        if not os.path.exists(os.path.join(out, "truth.csv")):
            subprocess.run([sys.executable, os.path.join(HERE, "..", "tools", "make_samples.py"), "--out", out,
                            "--n", str(a.n), "--seed", "7"], check=True)
        data = [out]
    index, search = os.path.join(a.build, "mmu-index"), os.path.join(a.build, "mmu-search")
    store = os.path.join(a.work, "store")
    subprocess.run([index, "build", *data, "--store", store, "--quiet"], check=True)
    subprocess.run([index, "xmatch", "--left", "legacysurvey", "--right", "desi", "--store", store, "--link"],
                   check=True, capture_output=True)
    print("machine: %s, %d cores, load average %s" % (
        open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip(), os.cpu_count(),
        " ".join(open("/proc/loadavg").read().split()[:3])))
    print("store: %s (%s)" % (store, ", ".join(data)))

    # The query: the image whose 50 neighbours are asked.
    server = tg.Server(search, store)
    objects = json.loads(urllib.request.urlopen(server.base + "/map/image.json").read())["points"]
    server.stop()
    qid = objects[0]["object_id"]

    driver = tg.start_browser(a.work)
    times, timings, server_cpu = [], [], []
    try:
        for _ in range(a.runs):
            server = tg.Server(search, store)  # cold: no cutout cached
            c0 = cpu_seconds(server.proc.pid)
            env = type("E", (), {})()
            env.driver, env.server = driver, server
            tg.open_page(env, "like=" + urllib.parse.quote(qid) + "&k=50", 51)
            # Navigation start to the last card's drawing, by the page's own clock.
            timings.append(driver.execute_script(TIMING_JS))
            times.append(timings[-1]["last_card"] / 1000)
            server_cpu.append(cpu_seconds(server.proc.pid) - c0)
            server.stop()
    finally:
        driver.quit()
    print("1. page of 50 neighbours, cold server: median %.3f s (runs %s); bound %.1f s: %s" % (
        statistics.median(times), ", ".join("%.3f" % t for t in times), PAGE_BOUND_S,
        "met" if statistics.median(times) <= PAGE_BOUND_S else "NOT met"))
    print("   server CPU per page: median %.0f ms (runs %s)" % (
        statistics.median(server_cpu) * 1e3, ", ".join("%.0f" % (c * 1e3) for c in server_cpu)))
    print("   where the median run's time went (browser Resource Timing):")
    print(timing_breakdown(timings[times.index(statistics.median(times))] if len(times) % 2 else
                           timings[sorted(range(len(times)), key=times.__getitem__)[len(times) // 2]]))

    server = tg.Server(search, store)
    try:
        def fetch(args):
            oid, survey, size = args
            with urllib.request.urlopen(server.base + tg.object_path("cutout", survey, oid, ".png") +
                                        "?size=%d" % size) as r:
                r.read()
        images = [(p["object_id"], p["survey"]) for p in objects]
        for clients, sizes in ((1, (64, 96)), (4, (128, 160))):
            work = [(oid, survey, size) for size in sizes for oid, survey in images]
            t0, c0 = time.perf_counter(), cpu_seconds(server.proc.pid)
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                list(pool.map(fetch, work))
            rate = len(work) / (time.perf_counter() - t0)
            cpu = (cpu_seconds(server.proc.pid) - c0) / len(work)
            print("2. cutouts rendered (cache misses), %d client(s): %d in %.2f s = %.0f/s wall; server CPU %.1f ms "
                  "each = %.0f/s per core; bound %.0f/s: %s" % (
                      clients, len(work), len(work) / rate, rate, cpu * 1e3, 1 / max(cpu, 1e-9), CUTOUT_BOUND,
                      "met" if rate >= CUTOUT_BOUND else "NOT met (wall)"))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
