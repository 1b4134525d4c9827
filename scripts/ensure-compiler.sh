#!/usr/bin/env bash
# A C++ compiler for the LSTM layer's CPU kernel (forecaster/layers/lstm_cpu.cc, built on first use into a
# cache: forecaster/layers/cpu_kernel.py). Without one the layer runs its slower XLA loops; the tests of
# the kernel need it. Installed with apt-get when missing and we are root.
set -euo pipefail
if command -v "${CXX:-g++}" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing a C++ compiler (apt-get install g++) for the LSTM's CPU kernel" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends g++ >/dev/null
else
  echo "no C++ compiler (${CXX:-g++}) and cannot install one (not root, or no apt-get): the layer will run" \
       "its XLA loops and the CPU kernel's tests will fail; install g++" >&2
fi
