#!/usr/bin/env bash
# Print the path of a copy of the reference app (app/) whose version is VERSION,
# made under build/ when missing: a deploy's -e version must be the app's own.
#
#   tools/app-at-version.sh 2.0.0   ->  build/app-2.0.0
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=${1:?usage: $0 VERSION}
out=build/app-$version
if [ ! -f "$out/pyproject.toml" ]; then
  mkdir -p build
  rm -rf "$out.tmp"
  cp -r app "$out.tmp"
  rm -rf "$out.tmp/tests"
  sed -i "s/^version = \".*\"$/version = \"$version\"/" "$out.tmp/pyproject.toml"
  mv "$out.tmp" "$out"
fi
echo "$PWD/$out"
