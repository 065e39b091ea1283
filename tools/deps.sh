#!/bin/sh
# Checks the Debian packages dsinfer needs and installs the missing ones with apt-get
# (as root, or through sudo), saying what it does. Usage: tools/deps.sh build|test|check
set -e
profile=${1:-build}
pkgs="gcc make pkg-config libpcre2-dev libutf8proc-dev libcjson-dev libmicrohttpd-dev libstb-dev libopenblas-dev xz-utils libvulkan-dev glslc"
case "$profile" in
  # the AArch64 kernel tests (make test-arm): cross compiler, and qemu-aarch64 to run them
  # the Vulkan tests run on lavapipe (a CPU Vulkan driver) under the validation layer
  test)  pkgs="$pkgs mesa-vulkan-drivers vulkan-validationlayers"
         [ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] &&
           pkgs="$pkgs gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user" ;;
  check) pkgs="$pkgs clang libclang-rt-dev libomp-dev mesa-vulkan-drivers vulkan-validationlayers" ;;
esac
missing=""
# the server tests (make test) run the official openai npm client under node
if [ "$profile" != build ] && { ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; }; then
  pkgs="$pkgs nodejs npm"
fi
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "dsinfer: installing missing Debian packages:$missing" >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
  echo "dsinfer: not root and no sudo; run: apt-get install -y$missing" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
