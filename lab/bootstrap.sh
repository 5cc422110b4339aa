#!/usr/bin/env bash
# Install the system packages the lab needs (Debian 12, as root). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
mapfile -t pkgs < <(grep -v '^\s*#' apt-packages.txt | grep -v '^\s*$')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "lab/bootstrap.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Elasticsearch needs a Java 21+ JDK; this machine kind ships one under /usr/lib/jvm.
if ! grep -lqsE 'JAVA_VERSION="(2[1-9]|[3-9][0-9])' /usr/lib/jvm/*/release; then
  echo "lab/bootstrap.sh: no Java 21+ JDK under /usr/lib/jvm; Elasticsearch will not start" >&2
  exit 1
fi
