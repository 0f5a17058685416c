#!/usr/bin/env bash
# Installs the Debian 12 packages mmu-search needs to build, test and run its demo.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake make pkg-config
  libfaiss-dev libtorch-dev libhdf5-dev libhealpix-cxx-dev libsqlite3-dev
  libcli11-dev catch2 hdf5-plugin-lzf liblzf-dev libopenblas0-openmp libopenblas-openmp-dev
  nlohmann-json3-dev libcpp-httplib-dev libcfitsio-dev
  zlib1g-dev
  python3-numpy python3-h5py python3-torch python3-astropy python3-faiss python3-hnswlib python3-sklearn
  chromium chromium-driver python3-selenium
  slurm-wlm munge openmpi-bin libopenmpi-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
