#!/usr/bin/env bash
# Fetches Apache Kafka (broker and tools, see pom.xml) from Maven Central into the
# per-machine cache, once. The platform does the same on first use
# (platform/src/local_kafka.rs); this script lets CI and newcomers do it up front.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
home="${SLUICE_KAFKA_HOME:-$HOME/.cache/sluice/kafka-$version}"
if [ -d "$home/libs" ]; then
    echo "Apache Kafka $version: $home/libs"
    exit 0
fi
command -v java >/dev/null || { echo "Java 17+ is needed for the local Kafka: apt-get install -y openjdk-17-jre-headless" >&2; exit 1; }
command -v mvn >/dev/null || { echo "Maven is needed to fetch Kafka: apt-get install -y maven" >&2; exit 1; }
mkdir -p "$home"
exec 9>"$home/.lock"
flock 9
if [ ! -d "$home/libs" ]; then
    cp "$here/pom.xml" "$home/pom.xml"
    cp "$here/log4j2.properties" "$home/log4j2.properties"
    rm -rf "$home/libs.partial"
    mvn -q -B -f "$home/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$home/libs.partial"
    mv "$home/libs.partial" "$home/libs"
fi
echo "Apache Kafka $version: $home/libs"
