#!/usr/bin/env bash
# Installs the Debian packages the hotline needs, only those missing. Idempotent; needs root or sudo.
# graphviz draws dial plans (ivr dialplan graph); fonts-nanum gives its PNGs Korean glyphs.
# chromium runs the page tests headless (tests/browser.py drives it through Playwright).
# kamailio-websocket-modules and rtpengine-daemon carry the agents' browser phones (docs/webrtc.md):
# SIP over secure WebSocket on the edge, and rtpengine (userspace) turning the browsers' DTLS-SRTP
# into the workers' plain RTP; `ivr run` starts its own rtpengine, the packaged one is never left running.
set -euo pipefail
PKGS=(redis-server kamailio kamailio-extra-modules kamailio-tls-modules kamailio-websocket-modules rtpengine-daemon openssl ca-certificates sip-tester espeak-ng ffmpeg python3-venv iproute2 systemd graphviz fonts-nanum chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm installs the browser phone's SIP library from deploy/npm/package-lock.json (make install): Debian's
# npm (with its nodejs) unless a Node.js with npm is already there (e.g. a nodesource nodejs, which
# bundles npm and conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || missing+=(npm)
# promtool checks deploy/prometheus/ivr-alerts.yml in the tests (docs/alerts.md). Debian ships it only in the
# `prometheus` package, whose post-install starts a Prometheus server listening on :9090: a policy-rc.d
# that refuses every start keeps the daemon down during the install (we want the tool, not a server
# scraping nothing on a port someone else may need), and it is stopped and disabled afterwards in case
# an init system started it anyway.
if ! command -v promtool >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
  fi
  echo "installing system packages: prometheus (for promtool; its daemon is kept stopped)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends prometheus || { [ -n "$policy" ] && $SUDO rm -f "$policy"; exit 1; }
  [ -n "$policy" ] && $SUDO rm -f "$policy"
  $SUDO service prometheus stop >/dev/null 2>&1 || true
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable prometheus >/dev/null 2>&1 || true; fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The packaged daemons must not start (rtpengine-daemon's would take the RTP ports and, without the
# kernel module, fail loudly): the same policy-rc.d as for prometheus refuses every start during the
# install, and they are stopped and disabled afterwards in case an init system started one anyway.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || { [ -n "$policy" ] && $SUDO rm -f "$policy"; exit 1; }
[ -n "$policy" ] && $SUDO rm -f "$policy"
# The hotline runs its own private instances.
for svc in redis-server kamailio rtpengine-daemon; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable rtpengine-daemon >/dev/null 2>&1 || true; fi
