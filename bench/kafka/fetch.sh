#!/usr/bin/env bash
# Fetch Apache Kafka's jars from the Maven repository into a cache outside the repo.
#   bench/kafka/fetch.sh            -> prints the libs directory on stdout
# Skips Maven when the cache already holds the server, tools and log4j2 binding jars.
# TIDELOG_BENCH_CACHE overrides the cache root (default ~/.cache/tidelog-bench).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${KAFKA_VERSION:-4.1.1}"
cache="${TIDELOG_BENCH_CACHE:-$HOME/.cache/tidelog-bench}"
libs="$cache/kafka-$version/libs"

have_all() {
  compgen -G "$libs/kafka_2.13-$version.jar" >/dev/null &&
    compgen -G "$libs/kafka-tools-$version.jar" >/dev/null &&
    compgen -G "$libs/log4j-slf4j-impl-*.jar" >/dev/null
}

if ! have_all; then
  mkdir -p "$libs"
  work="$cache/kafka-$version/build"
  mkdir -p "$work"
  # Build out of tree so target/ never lands in the repository.
  mvn -B -q -f "$here/pom.xml" \
    -Dkafka.version="$version" \
    -Dkafka.libs="$libs" \
    -Dbench.build.dir="$work" \
    package >&2
  have_all || { echo "fetch.sh: jars missing from $libs after mvn" >&2; exit 1; }
fi
echo "$libs"
