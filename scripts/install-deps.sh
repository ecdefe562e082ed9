#!/usr/bin/env bash
# Installs what a fresh machine lacks. Usage: install-deps.sh build|run|test|bench
# (run: the demo's speech engine too, espeak-ng; test and bench: every test peer as well)
# Only missing pieces are installed; `apt-get update` runs once, and only when needed.
set -euo pipefail
mode=${1:-build}

apt_packages=()
need_deb() { # need_deb PACKAGE [COMMAND-OR-FILE-THAT-PROVES-IT]
    local pkg=$1 probe=${2:-}
    if [ -n "$probe" ]; then
        if command -v "$probe" >/dev/null 2>&1 || [ -e "$probe" ]; then return; fi
    elif dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        return
    fi
    apt_packages+=("$pkg")
}

need_deb pkg-config pkg-config
need_deb libssl-dev /usr/include/openssl/ssl.h
need_deb libsystemd-dev /usr/include/systemd/sd-daemon.h

if [ "$mode" = run ]; then
    need_deb espeak-ng espeak-ng
fi
if [ "$mode" = test ] || [ "$mode" = bench ]; then
    need_deb curl curl
    need_deb procps pgrep
    need_deb haproxy haproxy
    need_deb iproute2 ip # the fleet test's network namespaces
    need_deb tmux tmux   # `ferry top` in a terminal
    need_deb openssl openssl
    need_deb systemd systemd-socket-activate
    need_deb python3 python3
    need_deb espeak-ng espeak-ng
    need_deb chromium chromium
    need_deb chromium-driver chromedriver
    need_deb nghttp2-client nghttp # HTTP/2 peers: nghttp (tests), h2load (bench)
    need_deb pebble pebble # ACME test CA (pebble, pebble-challtestsrv)
fi
if [ "$mode" = bench ]; then
    need_deb nginx nginx
    need_deb haproxy haproxy
    need_deb wrk wrk
    need_deb curl curl
fi

if [ -n "${FERRY_DEPS_DRY_RUN:-}" ]; then # tests: what would be installed, nothing done
    echo "would install: ${apt_packages[*]}"
    exit 0
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
    echo "install-deps: installing ${apt_packages[*]}"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

if [ "$mode" = test ] || [ "$mode" = bench ]; then
    missing_py=()
    for mod in websockets tornado selenium h2; do
        python3 -c "import $mod" 2>/dev/null || missing_py+=("$mod")
    done
    # The reference parser of the PROXY protocol differential test.
    python3 -c "import proxyprotocol" 2>/dev/null || missing_py+=("proxy-protocol==0.11.3")
    # scripts/check-kubernetes.py: the manifests against the committed JSON schemas (jsonschema
    # 4.18 or later: its `referencing` resolves the schemas' $refs offline).
    python3 -c "import jsonschema, referencing" 2>/dev/null || missing_py+=("jsonschema>=4.18")
    python3 -c "import yaml" 2>/dev/null || missing_py+=("pyyaml")
    if [ ${#missing_py[@]} -gt 0 ]; then
        echo "install-deps: pip installing ${missing_py[*]}"
        python3 -m pip install -q "${missing_py[@]}"
    fi
fi
