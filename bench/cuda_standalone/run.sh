#!/usr/bin/env bash
# Builds and runs mmu_cuda_check (driver.cpp): the GPU search path alone, with
# plain g++ against a LibTorch found from python or named by flags. See README.md.
#
#   bench/cuda_standalone/run.sh [--quick] [--out DIR] [--build DIR] [--python PY]
#       [--torch-dir DIR | --torch-include DIR --torch-lib DIR] [--abi 0|1] [--std c++17|c++20]
#       [--cuda auto|on|off] [--build-only] [-- DRIVER FLAGS...]
#
# Outputs go to $OUT when set, else to --out (default /tmp/mmu_cuda_check/out):
# cuda_check.log (build and run) and cuda_check.json (the figures).
# Exit: the driver's (0 pass, 1 a check failed, 3 CUDA build sees no GPU), or 10 build failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-}
build=/tmp/mmu_cuda_check/build
python=""
torch_dir="" torch_inc="" torch_lib="" abi="" std="" cuda=auto quick=0 build_only=0
driver_flags=()

die() { echo "run.sh: $*" >&2; exit 10; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --build) build=$2; shift ;;
    --python) python=$2; shift ;;
    --torch-dir) torch_dir=$2; shift ;;
    --torch-include) torch_inc=$2; shift ;;
    --torch-lib) torch_lib=$2; shift ;;
    --abi) abi=$2; shift ;;
    --std) std=$2; shift ;;
    --cuda) cuda=$2; shift ;;
    --build-only) build_only=1 ;;
    --) shift; driver_flags=("$@"); break ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown flag '$1' (see --help)" ;;
  esac
  shift
done
[ -n "$out" ] || out=/tmp/mmu_cuda_check/out
mkdir -p "$out" "$build" || die "cannot create '$out' or '$build'"
log=$out/cuda_check.log
: >"$log" || die "cannot write '$log'"
# Everything below also goes to the log; on exit, tee is waited for so that no last line is lost.
exec > >(tee -a "$log") 2>&1
tee_pid=$!
trap 'exec >&- 2>&-; wait "$tee_pid" 2>/dev/null' EXIT

echo "== mmu_cuda_check $(date -u +%FT%TZ) on $(hostname 2>/dev/null || cat /etc/hostname) =="
echo "repository: $root ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cores: $(nproc); compiler: $(${CXX:-g++} --version | head -1)"

# ---- LibTorch: from flags, else from python's torch package ----
torch_version="" torch_cuda="" py_abi=""
if [ -z "$torch_dir$torch_inc$torch_lib" ]; then
  if [ -z "$python" ]; then
    python=python3
    # The GPU machine's torch lives in a venv that may not be on PATH.
    if ! python3 -c 'import torch' 2>/dev/null && [ -x /opt/torch/.venv/bin/python3 ]; then
      python=/opt/torch/.venv/bin/python3
    fi
  fi
  info=$("$python" -c 'import torch, os
print(os.path.dirname(torch.__file__))
print(torch.__version__)
print(torch.version.cuda or "")
print(int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", 1)))' 2>&1) ||
    die "cannot import torch with '$python': $info
  give --python PY, --torch-dir DIR (DIR/include, DIR/lib) or --torch-include DIR --torch-lib DIR"
  { read -r torch_dir; read -r torch_version; read -r torch_cuda; read -r py_abi; } <<<"$info"
  echo "python: $python -> torch $torch_version, CUDA ${torch_cuda:-none}, _GLIBCXX_USE_CXX11_ABI $py_abi, at $torch_dir"
  if [ ! -d "$torch_dir/include" ] && [ -f /usr/include/torch/csrc/api/include/torch/torch.h ]; then
    # Debian's python3-torch ships no headers: they come with libtorch-dev.
    echo "note: $torch_dir has no include/; using the system LibTorch (libtorch-dev)"
    torch_inc=/usr/include torch_lib=$(dirname "$(ls /usr/lib/*/libtorch.so 2>/dev/null | head -1)")
  fi
fi
[ -n "$torch_inc" ] || torch_inc=$torch_dir/include
[ -n "$torch_lib" ] || torch_lib=$torch_dir/lib
api_inc=$torch_inc/torch/csrc/api/include
[ -f "$api_inc/torch/torch.h" ] || die "no torch/torch.h under '$api_inc' (LibTorch headers missing: is this torch built with its C++ headers?)"
[ -f "$torch_lib/libtorch.so" ] || die "no libtorch.so in '$torch_lib'"
[ -f "$torch_lib/libc10.so" ] || die "no libc10.so in '$torch_lib'"
if [ -z "$torch_version" ]; then
  torch_version=$(sed -n 's/^#define TORCH_VERSION_MAJOR \([0-9]*\)/\1/p;s/^#define TORCH_VERSION_MINOR \([0-9]*\)/.\1/p' \
    "$api_inc/torch/version.h" | tr -d '\n')
fi
if [ -z "$abi" ]; then
  if [ -n "$py_abi" ]; then abi=$py_abi
  # A LibTorch built with the new ABI defines c10 functions taking std::__cxx11::string.
  elif nm -D --defined-only "$torch_lib/libc10.so" 2>/dev/null | grep -q '__cxx11'; then abi=1
  else abi=0; fi
fi
case "$cuda" in
  auto) if [ -f "$torch_lib/libtorch_cuda.so" ]; then cuda=on; else cuda=off; fi ;;
  on) [ -f "$torch_lib/libtorch_cuda.so" ] || die "--cuda on, but '$torch_lib' has no libtorch_cuda.so (a CPU-only LibTorch)" ;;
  off) ;;
  *) die "--cuda must be auto, on or off" ;;
esac
if [ -z "$std" ]; then
  # Newer LibTorch headers stop with '#error C++20 ...' under C++17.
  major=${torch_version%%.*} minor=${torch_version#*.}; minor=${minor%%.*}
  if [ "${major:-0}" -gt 2 ] 2>/dev/null || { [ "${major:-0}" -eq 2 ] && [ "${minor:-0}" -ge 12 ]; } 2>/dev/null; then
    std=c++20
  else
    std=c++17
  fi
fi
echo "LibTorch: include $torch_inc, lib $torch_lib, version $torch_version, ABI $abi, CUDA $cuda, -std=$std"

# ---- build ----
cxx=${CXX:-g++}
launcher=""
if command -v ccache >/dev/null && [ -n "${CCACHE_DIR:-}" ]; then launcher=ccache; fi
defs=(-D_GLIBCXX_USE_CXX11_ABI="$abi")
[ "$cuda" = on ] && defs+=(-DMMU_WITH_CUDA)
libs=(-ltorch -ltorch_cpu -lc10)
[ "$cuda" = on ] && libs=(-ltorch_cuda -lc10_cuda "${libs[@]}")
sources=(plugin/torch_search.cpp src/base/error.cpp src/vector/device_search.cpp bench/cuda_standalone/driver.cpp)

compile() {  # compile STD SOURCE OBJECT LOG: skipped when OBJECT is newer than its inputs, built alike
  local cmd=("$cxx" -std="$1" -O2 -fopenmp -fPIC "${defs[@]}" -Wall -Wno-unused-parameter
    -I"$root/include" -I"$root/src" -I"$root/plugin" -I"$root/bench"
    -isystem "$torch_inc" -isystem "$api_inc" -c "$root/$2" -o "$3")
  if [ -f "$3" ] && [ "$(cat "$3.cmd" 2>/dev/null)" = "${cmd[*]}" ] &&
    [ -z "$(find "$root/$2" "$root/include" "$root/plugin" "$root/src/encode/model_plugin.h" "$root/bench/bench_stats.h" \
      -newer "$3" -name '*.[ch]*' 2>/dev/null | head -1)" ]; then
    echo "up to date: $2" >"$4"
    return 0
  fi
  rm -f "$3" "$3.cmd"
  $launcher "${cmd[@]}" >"$4" 2>&1 && echo "${cmd[*]}" >"$3.cmd"
}

build_all() {  # build_all STD: compiles the sources, up to nproc at once; lists failures in failed_src
  local i pids=()
  for i in "${!sources[@]}"; do
    # Named pids only: a bare `wait` would also wait for the log's tee.
    [ ${#pids[@]} -ge "$(nproc)" ] && { wait "${pids[0]}"; pids=("${pids[@]:1}"); }
    { compile "$1" "${sources[$i]}" "$build/obj$i.o" "$build/obj$i.log"; echo $? >"$build/obj$i.rc"; } &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
  failed_src=()
  for i in "${!sources[@]}"; do
    [ "$(cat "$build/obj$i.rc" 2>/dev/null)" = 0 ] || failed_src+=("$i")
  done
  [ ${#failed_src[@]} -eq 0 ]
}

echo "== build in $build =="
t0=$(date +%s)
failed_src=()
if ! build_all "$std" && [ "$std" = c++17 ] && grep -qs 'C++20' "$build"/obj*.log; then
  echo "LibTorch's headers need C++20: building again with -std=c++20"
  std=c++20
  build_all "$std"
fi
if [ ${#failed_src[@]} -gt 0 ]; then
  for i in "${failed_src[@]}"; do
    echo "---- compiling ${sources[$i]} failed (-std=$std); first errors ($build/obj$i.log):"
    grep -m 15 -E 'error|Error' "$build/obj$i.log"
    echo "---- last lines:"
    tail -n 25 "$build/obj$i.log"
  done
  echo "BUILD FAILED. Flags to try: --std c++20 / c++17, --abi 0|1, --cuda off (CPU-only check)."
  exit 10
fi
for i in "${!sources[@]}"; do
  if grep -q 'warning' "$build/obj$i.log"; then echo "warnings in ${sources[$i]}:"; grep -A3 'warning' "$build/obj$i.log" | head -40; fi
done
# --no-as-needed: nothing names a libtorch_cuda symbol, yet loading it is what registers the CUDA backend.
# pip's CUDA libraries (site-packages/nvidia/*/lib) are found at run time through libtorch_cuda's own
# RUNPATH; at link time they are named with -rpath-link, or left unresolved (--allow-shlib-undefined).
link_extra=(-Wl,--allow-shlib-undefined)
for d in "$torch_lib"/../../nvidia/*/lib "$torch_lib"/../../nvidia/*/*/lib; do
  [ -d "$d" ] && link_extra+=(-Wl,-rpath-link,"$d")
done
if ! "$cxx" -fopenmp -o "$build/mmu_cuda_check" "$build"/obj{0,1,2,3}.o -L"$torch_lib" -Wl,-rpath,"$torch_lib" \
  "${link_extra[@]}" -Wl,--no-as-needed "${libs[@]}" -Wl,--as-needed -lpthread >"$build/link.log" 2>&1; then
  echo "---- linking failed ($build/link.log):"
  tail -n 30 "$build/link.log"
  echo "BUILD FAILED at the link. Flags to try: --abi $((1 - abi)) (undefined c10/torch symbols with std::string often mean the ABI), --cuda off."
  exit 10
fi
echo "built in $(( $(date +%s) - t0 )) s"
[ "$build_only" = 1 ] && exit 0

# ---- run ----
flags=(--json "$out/cuda_check.json")
[ "$quick" = 1 ] && flags+=(--quick)
echo "== $build/mmu_cuda_check ${flags[*]} ${driver_flags[*]} =="
"$build/mmu_cuda_check" "${flags[@]}" "${driver_flags[@]}"
rc=$?
echo "== exit $rc; log $log; figures $out/cuda_check.json =="
exit $rc
