#!/usr/bin/env bash
# Runs every test of the workspace against real services.
# Installs the Debian packages the tests need (only those missing), then
# checks formatting and lints, then runs unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
  prometheus-node-exporter prometheus-process-exporter prometheus
  prometheus-postgres-exporter prometheus-nginx-exporter
  postgresql postgresql-client slapd ldap-utils nginx openssl curl
  rsyslog rsyslog-openssl bsdutils logrotate prometheus-alertmanager systemd
  chromium chromium-driver debootstrap python3-venv iproute2
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Debian package test builds the .deb with cargo-deb (pinned: it plans
# to refuse the dev profile the test packages).
if ! cargo deb --version 2>/dev/null | grep -q "3.8.0"; then
  cargo install cargo-deb --version 3.8.0 --locked
fi

# An S3 server for the object storage tests (moto_server, from PyPI).
MOTO="$HOME/.cache/carbonio-monitor/moto"
if [ ! -x "$MOTO/bin/moto_server" ]; then
  python3 -m venv "$MOTO"
  "$MOTO/bin/pip" install -q 'moto[server]'
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# One closing line that counts every test binary's results together.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
