#!/usr/bin/env bash
# Installs what building, testing and the demo need, idempotently: packages
# already present are not touched and apt is only called when one is missing.
set -euo pipefail

packages=(
	# strongSwan as the interop peer, with kernel-libipsec for ESP in user
	# space (the build machines' kernel has no ESP) and the kdf plugin.
	# Recommends are off, so its crypto comes by name: openssl and gcm are
	# in the standard plugins, chapoly and curve25519 in the extra ones;
	# without them charon exits with status 66 (internal/swan names the
	# missing package).
	strongswan-charon strongswan-swanctl libcharon-extra-plugins
	libstrongswan-standard-plugins libstrongswan-extra-plugins
	# strongSwan's pki: ike/dn's tests compare our DN encoding with its own
	strongswan-pki
	# strongSwan 6 as a second interop peer: internal/swan builds a Debian
	# sid root holding it with mmdebstrap, once per machine, and runs its
	# charon chrooted there (sid packages never go on the machine itself);
	# without mmdebstrap the strongswan-6.1 subtests skip.
	mmdebstrap
	# lab tooling: namespaces are made through netlink, these are run inside
	iproute2 iptables iputils-ping iperf3 tcpdump
	# the WireGuard baseline of `xdpsec-bench bench` (wireguard-go is built from the Go module proxy)
	wireguard-tools
	# eBPF toolchain for `make generate` and the stale-object check
	clang llvm libbpf-dev
	# the VM rig (internal/vm): the xfrm data plane's tests boot Debian's
	# kernel in qemu, with a busybox initramfs and a depmod'ed module tree
	qemu-system-x86 busybox-static kmod
)

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: must run as root (tests create network namespaces and load BPF programs)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# A fresh machine has no package lists; retry once for a flaky mirror.
	apt-get update -qq || { sleep 5; apt-get update -qq; }
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The packaged strongSwan may start its own charon on install; the tests run
# private ones per namespace and must not meet a system daemon.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet strongswan-starter 2>/dev/null; then
	systemctl stop strongswan-starter || true
fi

# BPF programs and maps are pinned under /sys/fs/bpf.
if ! mountpoint -q /sys/fs/bpf; then
	mkdir -p /sys/fs/bpf
	mount -t bpf bpf /sys/fs/bpf
fi

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "deps: Go 1.26 or newer is required (expected at /usr/local/go/bin/go)" >&2
	exit 1
fi
echo "deps: ok"
