#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Installs, from Debian 12's packages, exactly what the build, the tests, the fuzzers and the
# benchmarks need. With --check it only reports (exit 1) whether something is missing.
set -eu

PACKAGES="build-essential pkg-config git
libevent-dev libnghttp2-dev libssl-dev libjansson-dev libcmocka-dev
clang libclang-rt-14-dev clang-format
curl nghttp2-client jq procps prometheus openssl iproute2
bpftool libbpf-dev libelf-dev zlib1g-dev
protobuf-c-compiler libprotobuf-c-dev
nats-server libnats-dev faketime
libseccomp-dev bubblewrap runsc python3 tar
qemu-system-x86 lz4
python3-yaml systemd systemd-container"

# What each package above provides, as pkg-config modules and commands, for --check.
PKG_MODULES="libevent libevent_openssl libnghttp2 jansson openssl cmocka libbpf libprotobuf-c libnats libseccomp"
COMMANDS="cc make pkg-config git clang clang-format curl nghttp h2load jq ps promtool openssl ip bpftool protoc-c nats-server
bwrap runsc python3 tar qemu-system-x86_64 lz4 systemd-analyze faketime"
# bpftool is installed in /usr/sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

missing() {
	for m in $PKG_MODULES; do
		pkg-config --exists "$m" 2>/dev/null || { echo "pkg-config module $m"; return 0; }
	done
	for c in $COMMANDS; do
		command -v "$c" >/dev/null 2>&1 || { echo "command $c"; return 0; }
	done
	[ -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ] ||
		ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
		{ echo "libFuzzer runtime"; return 0; }
	return 1
}

if [ "${1:-}" = "--check" ]; then
	if what=$(missing); then
		echo "missing: $what" >&2
		exit 1
	fi
	exit 0
fi

what=$(missing) || { echo "All dependencies are installed."; exit 0; }
echo "Installing dependencies (first missing: $what)..." >&2

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to apt-get install" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
if what=$(missing); then
	echo "still missing after install: $what" >&2
	exit 1
fi
echo "Dependencies installed." >&2
