#!/usr/bin/env bash
# Debian's chromium for the status page's browser test (systemtest TestClusterStatusPage):
# installed with apt-get when missing, else nothing. Prints the browser's path.
# Idempotent; run by `make test` (target chromium). TALLY_CHROMIUM names another binary.
set -euo pipefail
find_chromium() {
	for b in "${TALLY_CHROMIUM:-}" chromium chromium-browser google-chrome; do
		if [ -n "$b" ] && command -v "$b" >/dev/null 2>&1; then
			command -v "$b"
			return 0
		fi
	done
	return 1
}
if find_chromium; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "chromium.sh: chromium is not installed and this is not root: install Debian's chromium package (apt-get install chromium)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
find_chromium
