#!/bin/sh
# What the browser tests need from the machine: Node.js with npm, and
# Chromium where the harness looks for it ($CHROMIUM, or Debian's
# /usr/bin/chromium). Run as root, this installs what is missing with apt;
# otherwise it stops at once and prints the command to run. `make test`
# calls it before `npm ci`.
set -eu

chromium=${CHROMIUM:-/usr/bin/chromium}

missing() {
	need=
	command -v node >/dev/null 2>&1 || need="$need nodejs"
	command -v npm >/dev/null 2>&1 || need="$need npm"
	[ -x "$chromium" ] || need="$need chromium"
	echo "$need"
}

need=$(missing)
[ -z "$need" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	echo "e2e: installing$need with apt"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y -qq $need
	need=$(missing)
	[ -z "$need" ] && exit 0
	echo "e2e: still missing after apt-get install:$need" >&2
	[ -x "$chromium" ] || echo "e2e: no Chromium at $chromium; unset CHROMIUM to use Debian's /usr/bin/chromium" >&2
	exit 1
fi

echo "e2e: the browser tests need$need, missing here. Install with:" >&2
echo "" >&2
echo "    sudo sh -c 'apt-get update && apt-get install -y$need'" >&2
echo "" >&2
[ -x "$chromium" ] || echo "(or set CHROMIUM to a Chromium binary; now looking at $chromium)" >&2
exit 1
