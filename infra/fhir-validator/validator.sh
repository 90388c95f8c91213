#!/usr/bin/env bash
# HAPI FHIR's reference validator (R4, offline), fetched from Maven Central.
#   validator.sh fetch   copy the jars into a cache folder (once per pom.xml)
#   validator.sh run     validate stdin's FHIR JSON resources, one per line (see Validate.java)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom_hash="$(sha256sum "$here/pom.xml" | cut -c1-12)"
jars_dir="${FHIR_VALIDATOR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/healthstream}/fhir-validator-$pom_hash"

fetch() {
  if [[ -f "$jars_dir/.complete" ]]; then return; fi
  echo "fetching HAPI FHIR's validator from Maven Central into $jars_dir" >&2
  rm -rf "$jars_dir.tmp"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$jars_dir.tmp" >&2
  touch "$jars_dir.tmp/.complete"
  rm -rf "$jars_dir"
  mv "$jars_dir.tmp" "$jars_dir"
}

case "${1:-}" in
  fetch) fetch ;;
  run) fetch; exec java -Xss4m -cp "$jars_dir/*" "$here/Validate.java" ;;
  *) echo "usage: $0 fetch|run" >&2; exit 2 ;;
esac
