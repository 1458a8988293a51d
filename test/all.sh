#!/usr/bin/env bash
# Runs every test cstagw has: it first installs what the tests need when it is
# missing (Go modules; sipp from Debian's sip-tester, kamailio and its
# ndb_redis module from kamailio-redis-modules (kamailio.cfg's WITH_REDIS),
# redis-server for the cluster tests, and OpenLDAP's slapd and ldap-utils for
# the LDAP directory tests, via apt-get),
# then checks gofmt and go mod tidy, runs go vet and the Go unit,
# integration and end-to-end tests (the sipp
# and Kamailio scenarios are driven from Go tests under test/).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v kamailio >/dev/null 2>&1 || missing+=(kamailio)
# The module's path is Debian's (dpkg -L kamailio-redis-modules).
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/ndb_redis.so ] || missing+=(kamailio-redis-modules)
# redis-server (Debian: /usr/bin) is looked for by path too, like slapd below.
{ command -v redis-server || [ -x /usr/bin/redis-server ]; } >/dev/null 2>&1 || missing+=(redis-server)
# slapd lives in /usr/sbin, which a non-root PATH may lack.
{ command -v slapd || [ -x /usr/sbin/slapd ]; } >/dev/null 2>&1 || missing+=(slapd)
command -v ldapadd >/dev/null 2>&1 || missing+=(ldap-utils)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test/all.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

go mod download

# The tree must be gofmt-clean and go.mod/go.sum tidy.
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './test/bench/out/*'))"
if [ -n "$unformatted" ]; then
  echo "test/all.sh: gofmt differences in:" >&2
  echo "$unformatted" >&2
  exit 1
fi
if ! go mod tidy -diff >/dev/null 2>&1; then
  echo "test/all.sh: go.mod/go.sum are not tidy (run go mod tidy):" >&2
  go mod tidy -diff >&2 || true
  exit 1
fi

go vet ./...
go test -race -count=1 -timeout 12m ./...
