#!/usr/bin/env bash
# Debian packages the lab reads at run time: manpages-ja (the default real Japanese corpus), dataset-fashion-mnist
# (the real image target with headroom: 60k train / 10k test product photos) and libllvm19
# (Mitsuba's llvm_ad_rgb variant; the scalar variant needs nothing).
# Idempotent and quick when present; installs only as root (CI, containers), otherwise says what to run.
set -euo pipefail
packages=(manpages-ja dataset-fashion-mnist libllvm19)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
echo "system-deps: installed ${missing[*]}"
