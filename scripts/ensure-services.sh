#!/usr/bin/env bash
# Makes sure what the test suite needs outside npm is present: Debian's chromium (for page tests),
# CJK fonts (so screenshots show Chinese), and the local PostgreSQL and Redis servers.
set -uo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi 'noto.*cjk'; then
  echo "[wxsub] installing chromium and CJK fonts from Debian's packages"
  as_root apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium fonts-noto-cjk >/dev/null 2>&1 \
    || echo "[wxsub] warning: could not install chromium; browser tests will fail in CI" >&2
fi

pg_up() { (echo > /dev/tcp/127.0.0.1/5432) >/dev/null 2>&1; }
redis_up() { (echo > /dev/tcp/127.0.0.1/6379) >/dev/null 2>&1; }

if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "[wxsub] starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! redis_up && command -v redis-server >/dev/null 2>&1; then
  echo "[wxsub] starting Redis"
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
for _ in $(seq 1 30); do pg_up && redis_up && break; sleep 1; done
pg_up || echo "[wxsub] warning: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
redis_up || echo "[wxsub] warning: Redis is not reachable on 127.0.0.1:6379" >&2
exit 0
