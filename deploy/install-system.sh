#!/usr/bin/env bash
# Installs the Debian packages the hotline needs, only those missing. Idempotent; needs root or sudo.
# graphviz draws dial plans (ivr dialplan graph); fonts-nanum gives its PNGs Korean glyphs.
# chromium runs the page tests headless (tests/browser.py drives it through Playwright).
set -euo pipefail
PKGS=(redis-server kamailio kamailio-extra-modules kamailio-tls-modules openssl ca-certificates sip-tester espeak-ng ffmpeg python3-venv iproute2 systemd graphviz fonts-nanum chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian may start the packaged daemons; the hotline runs its own private instances.
for svc in redis-server kamailio; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
