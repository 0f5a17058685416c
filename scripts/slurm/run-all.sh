#!/bin/bash
# Submits the whole sharded build as one chain of Slurm jobs and returns at once:
#   fit  ->  build array (N tasks)  ->  merge
# each step starting only when the one before succeeded (--dependency=afterok); a failed step cancels
# the steps after it (--kill-on-invalid-dep=yes) instead of leaving them pending for ever.
# Parameters: the MMU_* variables of the job files (MMU_BIN, MMU_DATA, MMU_WORK, MMU_SHARDS,
# MMU_FIT_SAMPLE, MMU_SEED, MMU_STORE, MMU_BUILD_FLAGS), taken from this environment; extra
# arguments go to every sbatch (e.g. --partition=cpu --account=astro).
# Usage: MMU_DATA=/data/mmu MMU_WORK=/scratch/me/w MMU_STORE=/data/store MMU_SHARDS=64 scripts/slurm/run-all.sh [SBATCH ARGS]
#        MMU_WAIT=1 ... run-all.sh   waits for the merge; exits 0 only when the merge ran to the end
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
shards=${MMU_SHARDS:-64}
export MMU_SHARDS=$shards
if ! [[ $shards =~ ^[1-9][0-9]*$ ]]; then
  echo "error: MMU_SHARDS must be a positive integer, got '$shards'" >&2
  exit 2
fi
fit=$(sbatch --parsable "$@" "$here/fit.sbatch")
fit=${fit%%;*}  # --parsable prints "id;cluster" on a federation
build=$(sbatch --parsable "$@" --dependency="afterok:$fit" --kill-on-invalid-dep=yes \
  --array="0-$((shards - 1))" "$here/build-array.sbatch")
build=${build%%;*}
echo "submitted: fit $fit, build array $build (tasks 0-$((shards - 1))), merge after them"
# afterok on an array job waits for every task to succeed.
merge=(sbatch "$@" --dependency="afterok:$build" --kill-on-invalid-dep=yes "$here/merge.sbatch")
if [[ "${MMU_WAIT:-0}" != 1 ]]; then
  "${merge[@]}"
  exit
fi
rc=0
id=$("${merge[0]}" --parsable --wait "${merge[@]:1}") || rc=$?
id=${id%%;*}
if (( rc != 0 )); then
  echo "error: merge job ${id:-?} failed (exit $rc): see its output file" >&2
  exit "$rc"
fi
# sbatch --wait also returns 0 for a job cancelled before it ran (a step before it failed): the merge's
# own proof says whether it ran to the end.
work=${MMU_WORK:-/scratch/$USER/mmu-work}  # the job files' default
if [[ ! -e "$work/merge-$id.done" ]]; then
  echo "error: merge job $id did not run to the end: a step before it failed or was cancelled (fit $fit," \
       "build array $build: see their output files, or sacct -j $fit,$build,$id)" >&2
  exit 1
fi
echo "merged: job $id wrote $(cat "$work/merge-$id.done")"
