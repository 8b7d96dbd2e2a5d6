#!/usr/bin/env bash
# Server CPU per request: drives a running server (tally serve, or the
# harness's no-op server: go run ./bench/noopserver ADDR BYTES) with
# wrk -t1 -c64 for DURATION, POSTing BODY_FILE to URL, and divides the
# server process's CPU time (/proc/PID/stat, user and system) by the
# requests wrk completed. wrk comes from Debian's package.
#
#   scripts/cpu-per-request.sh PID URL BODY_FILE [DURATION]
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 PID URL BODY_FILE [DURATION, default 5s]" >&2
  exit 2
fi
pid=$1 url=$2 body=$3 dur=${4:-5s}
lua=$(mktemp --suffix .lua)
trap 'rm -f "$lua"' EXIT
python3 - "$body" "$lua" <<'PY'
import json, sys
body = open(sys.argv[1]).read().strip()
open(sys.argv[2], "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = ' + json.dumps(body) + "\n")
PY
tck=$(getconf CLK_TCK)
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
out=$(wrk -t1 -c64 -d"$dur" -s "$lua" "$url")
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
req=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
python3 -c "
u = ($u1 - $u0) / $tck * 1e6 / $req
s = ($s1 - $s0) / $tck * 1e6 / $req
print(f'{float($rps):.0f} req/s; server CPU per request: user {u:.2f} us, system {s:.2f} us, total {u + s:.2f} us')"
