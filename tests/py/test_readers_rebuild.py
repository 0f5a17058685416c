"""End-to-end check that readers survive rebuilds (issue 16 point 2): CLI
queries and HTTP queries on a running `serve` while the store is rebuilt,
all answered, each from one generation (its ras name it), and the server
answering from each new generation within 1 s of its commit. The same logic
as bench/readers_during_rebuilds.py (5,000 + 5,000 queries over 50
rebuilds), with counts small enough for `make test`.
Run: test_readers_rebuild.py --bin BUILD --tmp DIR
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
from harness import Checks, binaries_samples_tmp  # noqa: E402
import readers_during_rebuilds as rdr  # noqa: E402

CLI_QUERIES, HTTP_QUERIES, REBUILDS = 250, 1000, 10


def main():
    a, index, search = binaries_samples_tmp(inputs=())
    figures, failures = rdr.run(index, search, os.path.join(a.tmp, "run"), CLI_QUERIES, HTTP_QUERIES, REBUILDS)
    c = Checks()
    c.check(figures["rebuilds"] == REBUILDS, f"{figures['rebuilds']} rebuilds, wanted {REBUILDS}")
    c.check(figures["cli_queries"] >= CLI_QUERIES, f"only {figures['cli_queries']} CLI queries")
    c.check(figures["http_queries"] >= HTTP_QUERIES, f"only {figures['http_queries']} HTTP queries")
    # Answers came from many generations: the readers really ran across commits.
    c.check(figures["generations_answered_http"] >= REBUILDS // 2,
            f"HTTP answers came from only {figures['generations_answered_http']} generations")
    c.check(figures["generations_answered_cli"] >= 2,
            f"CLI answers came from only {figures['generations_answered_cli']} generations")
    c.check(not failures, f"{len(failures)} failures, e.g.\n  " + "\n  ".join(failures[:5]))
    return c.summary()


if __name__ == "__main__":
    sys.exit(main())
