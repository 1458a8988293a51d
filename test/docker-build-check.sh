#!/usr/bin/env bash
# Checks the container build without a Docker engine:
#   1. runs the Dockerfile's build-stage commands (its ENV and its RUN lines
#      with "go build", read from the Dockerfile itself) into a temporary
#      directory, and checks that every binary is static (file, ldd);
#   2. validates configs/gateway.yaml with the built gateway (the build stage
#      does the same);
#   3. smoke-runs the built binaries: ctisim, the gateway on loopback ports,
#      and the healthcheck prober against /healthz and /readyz;
#   4. checks the runtime stage's promises (non-root user, ports, config path,
#      entrypoint, health check);
#   5. checks that docker-compose.yml is well-formed YAML with the expected
#      services, that its inline gateway configuration passes -check, and,
#      when kamailio is installed, that configs/kamailio/kamailio.cfg parses.
#
#   test/docker-build-check.sh            (from anywhere; needs go, file, python3)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "docker-build-check: FAIL: $*" >&2; exit 1; }
say() { echo "docker-build-check: $*"; }

for tool in go file python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is required"
done
python3 -c 'import yaml' 2>/dev/null || fail "python3 yaml module is required (apt-get install python3-yaml)"

out="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  rm -rf "$out"
}
trap cleanup EXIT

# --- 1. the build stage ------------------------------------------------------
# The build stage runs from its FROM line to the next FROM. Take its ENV
# lines and the RUN instruction that builds (joining continuation lines).
stage="$(awk '/^FROM /{n++} n==1' Dockerfile)"
[ -n "$stage" ] || fail "no build stage in Dockerfile"
grep -q '^FROM golang:' <<<"$stage" || fail "build stage is not FROM golang:"

envs="$(grep '^ENV ' <<<"$stage" | sed 's/^ENV //')"
run="$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' <<<"$stage" | grep '^RUN .*go build' | sed 's/^RUN //')"
[ -n "$run" ] || fail "no RUN ... go build in the build stage"
for b in cstagw ctisim healthcheck; do
  grep -q -- "-o /out/$b ./cmd/$b" <<<"$run" || fail "the build stage does not build ./cmd/$b into /out/$b"
done
grep -q -- '-trimpath' <<<"$run" || fail "go build without -trimpath"
grep -q -- '-ldflags "-s -w"' <<<"$run" || fail 'go build without -ldflags "-s -w"'
grep -q '^CGO_ENABLED=0$' <<<"$envs" || fail "the build stage does not set ENV CGO_ENABLED=0"

say "go mod download"
go mod download

say "build stage: ENV $envs"
say "build stage: RUN $run"
(
  # shellcheck disable=SC2086
  export $envs
  cmd="${run//\/out\//$out/}"
  bash -euo pipefail -c "$cmd"
)

for b in cstagw ctisim healthcheck; do
  bin="$out/$b"
  [ -x "$bin" ] || fail "$bin was not built"
  desc="$(file -b "$bin")"
  case "$desc" in
    *"statically linked"*) ;;
    *) fail "$b is not statically linked: $desc" ;;
  esac
  case "$desc" in
    *"not stripped"*) fail "$b is not stripped: $desc" ;;
  esac
  if command -v ldd >/dev/null 2>&1 && ldd "$bin" >/dev/null 2>&1; then
    fail "ldd lists shared libraries for $b: $(ldd "$bin" 2>&1 | tr '\n' ' ')"
  fi
  say "$b: static, stripped, $(du -h "$bin" | cut -f1)"
done

# --- 2. the default configuration -------------------------------------------
"$out/cstagw" -config configs/gateway.yaml -check

# --- 3. smoke run ------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
cti_a="$(free_port)"; cti_b="$(free_port)"; admin="$(free_port)"
"$out/ctisim" -listen "127.0.0.1:$cti_a,127.0.0.1:$cti_b" -control "" -quiet &
pids+=($!)
cat >"$out/smoke.yaml" <<EOF
sip:
  listen: ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
  trusted_hosts: ["127.0.0.0/8"]
cti:
  links:
    - {name: cti-a, address: "127.0.0.1:$cti_a", app_session: true}
    - {name: cti-b, address: "127.0.0.1:$cti_b", app_session: true}
directory:
  users:
    - uri: sip:user1@demo.cstagw
      lines: [{line: "tel:40001;phone-context=dialstring", device: "40001"}]
admin:
  listen: 127.0.0.1:$admin
log:
  level: warn
EOF
"$out/cstagw" -config "$out/smoke.yaml" -check >/dev/null
"$out/cstagw" -config "$out/smoke.yaml" 2>"$out/smoke.log" &
pids+=($!)

ok=""
for _ in $(seq 1 100); do
  if "$out/healthcheck" -q -timeout 1s "http://127.0.0.1:$admin/readyz" 2>/dev/null; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { cat "$out/smoke.log" >&2; fail "the gateway never became ready (/readyz)"; }
"$out/healthcheck" -timeout 2s "http://127.0.0.1:$admin/healthz"
CSTAGW_HEALTHCHECK_URL="http://127.0.0.1:$admin/healthz" "$out/healthcheck" -q \
  || fail "healthcheck ignores CSTAGW_HEALTHCHECK_URL"
if "$out/healthcheck" -q -timeout 1s "http://127.0.0.1:$admin/no-such-page" 2>/dev/null; then
  fail "healthcheck accepted a 404"
fi
say "smoke run: ctisim + gateway up, healthcheck ok"

# --- 4. the runtime stage ----------------------------------------------------
runtime="$(awk '/^FROM /{n++} n>=2' Dockerfile)"
grep -Eq '^FROM (gcr\.io/distroless/static(-debian[0-9]+)?:nonroot|scratch)' <<<"$runtime" \
  || fail "runtime stage is not distroless/static:nonroot or scratch"
grep -q '^USER 65532:65532$' <<<"$runtime" || fail "runtime stage does not run as 65532:65532"
for p in 5060/udp 5060/tcp 5061/tcp 8080; do
  grep -q "^EXPOSE .*$p" <<<"$runtime" || fail "EXPOSE lacks $p"
done
grep -q '^COPY configs/gateway.yaml /etc/cstagw/gateway.yaml$' <<<"$runtime" || fail "no default /etc/cstagw/gateway.yaml"
grep -q '^ENTRYPOINT \["/usr/local/bin/cstagw", *"-config", *"/etc/cstagw/gateway.yaml"\]$' <<<"$runtime" \
  || fail "unexpected ENTRYPOINT"
grep -q '/usr/local/bin/healthcheck' <<<"$runtime" || fail "HEALTHCHECK does not use /usr/local/bin/healthcheck"
say "runtime stage: non-root, ports, config path, entrypoint, health check"

# --- 5. docker-compose.yml and the Kamailio configuration --------------------
python3 - "$out/compose-gateway.yaml" <<'PY'
import sys, yaml
with open("docker-compose.yml") as f:
    doc = yaml.safe_load(f)
def need(cond, what):
    if not cond:
        sys.exit("docker-compose.yml: " + what)
need(isinstance(doc, dict), "not a mapping")
svcs = doc.get("services") or {}
for name in ("ctisim", "cstagw", "kamailio"):
    need(name in svcs, "service %s missing" % name)
for name, svc in svcs.items():
    need("image" in svc or "build" in svc, "service %s has neither image nor build" % name)
need(svcs["cstagw"]["depends_on"]["ctisim"]["condition"] == "service_healthy", "cstagw must wait for ctisim")
need(svcs["kamailio"]["depends_on"]["cstagw"]["condition"] == "service_healthy", "kamailio must wait for cstagw")
need(any(v.startswith("./configs/kamailio:/etc/kamailio") for v in svcs["kamailio"].get("volumes", [])),
     "kamailio does not mount configs/kamailio")
cfgs = {c["source"]: c["target"] for c in svcs["cstagw"].get("configs", [])}
need(cfgs.get("cstagw-gateway") == "/etc/cstagw/gateway.yaml", "cstagw does not get its configuration")
content = doc["configs"]["cstagw-gateway"]["content"]
# Compose interpolation: "$$" is a literal "$".
with open(sys.argv[1], "w") as f:
    f.write(content.replace("$$", "$"))
trusted = yaml.safe_load(content)["sip"]["trusted_hosts"]
kam_ip = svcs["kamailio"]["networks"]["rcc"]["ipv4_address"]
need(kam_ip in trusted, "the gateway does not trust Kamailio's address %s" % kam_ip)
print("docker-build-check: docker-compose.yml: well-formed, services %s" % ", ".join(svcs))
PY
"$out/cstagw" -config "$out/compose-gateway.yaml" -check >/dev/null \
  || fail "the inline gateway configuration of docker-compose.yml does not pass -check"
say "docker-compose.yml: inline gateway configuration is valid"
grep -Eq '^1 sip:cstagw:5060' configs/kamailio/dispatcher.list || fail "dispatcher.list does not name the compose gateway"

kam="$(command -v kamailio || true)"
[ -z "$kam" ] && [ -x /usr/sbin/kamailio ] && kam=/usr/sbin/kamailio
if [ -n "$kam" ]; then
  "$kam" -f configs/kamailio/kamailio.cfg -c \
    -A "DISPATCHER_LIST=\"$PWD/configs/kamailio/dispatcher.list\"" >"$out/kamailio-check.log" 2>&1 \
    || { cat "$out/kamailio-check.log" >&2; fail "kamailio -c rejects configs/kamailio/kamailio.cfg"; }
  say "configs/kamailio/kamailio.cfg: kamailio -c ok"
else
  say "kamailio not installed: configs/kamailio/kamailio.cfg not parsed"
fi

say "all checks passed"
