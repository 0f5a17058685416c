"""Prints the object_id `make demo` queries: the first image-survey spiral of a
truth table (deterministic, and a class whose neighbours are easy to judge)."""
import csv
import sys


def main(path, survey="legacysurvey", cls="spiral"):
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r["survey"] == survey and r["class"] == cls]
    if not rows:
        sys.exit(f"no {cls} in {survey} in {path}")
    print(sorted(r["object_id"] for r in rows)[0])


if __name__ == "__main__":
    main(*sys.argv[1:])
