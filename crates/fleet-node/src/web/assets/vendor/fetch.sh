#!/bin/sh
# Re-fetch the dashboard's vendored terminal emulator (xterm.js) from the npm registry, once,
# by hand: the build never runs this and never fetches anything (the files are committed and
# built into the binary with include_bytes!). Writes the minified files beside this script and
# VERSIONS (package, version, file, sha256), which `sha256sum -c`-style checks can reuse.
#   sh crates/fleet-node/src/web/assets/vendor/fetch.sh [VERSION]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=${1:-6.0.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@xterm/xterm@$version" >/dev/null)
tar -xzf "$tmp"/xterm-xterm-"$version".tgz -C "$tmp"
cp "$tmp/package/lib/xterm.js" "$here/xterm.js"
cp "$tmp/package/css/xterm.css" "$here/xterm.css"
cp "$tmp/package/LICENSE" "$here/xterm.LICENSE"
{
  echo "# Vendored by fetch.sh from the npm registry; do not edit by hand."
  for f in xterm.js xterm.css xterm.LICENSE; do
    echo "@xterm/xterm $version $f $(sha256sum "$here/$f" | cut -d' ' -f1)"
  done
} > "$here/VERSIONS"
cat "$here/VERSIONS"
