#!/usr/bin/env bash
# Debian packages the tests and benchmarks use: Chromium (the BIA report is checked in a real
# browser), prometheus (promtool checks and unit-tests the alert rules; the server scrapes drctl in
# the alerting loop test), prometheus-alertmanager (routes those alerts back to drctl; amtool
# checks its example config), wrk (bench/intake), a Korean font (the dashboard's screenshots in
# Korean, and its language switch), nginx (the load balancer in front of replicas), redis-server
# (a Redis of a test's own, killed mid-load) and pg_dump/pg_restore (the backup restored before
# `drctl reconcile`). Installed only when missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -d /usr/share/fonts/truetype/nanum ] || need+=(fonts-nanum)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v pg_dump && command -v pg_restore; } >/dev/null 2>&1 || need+=(postgresql-client)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || need+=(prometheus)
{ command -v amtool && command -v prometheus-alertmanager; } >/dev/null 2>&1 || need+=(prometheus-alertmanager)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# the packages start servers on :9090/:9093/:80 where systemd runs; tests start their own
for unit in prometheus prometheus-alertmanager nginx; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done
