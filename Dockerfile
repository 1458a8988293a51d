# cstagw container image.
#
#   docker build -t cstagw .
#   docker run --rm -p 5060:5060/udp -p 5060:5060/tcp -p 8080:8080 \
#       -v $PWD/my-gateway.yaml:/etc/cstagw/gateway.yaml:ro cstagw
#
# Configuration: /etc/cstagw/gateway.yaml (configs/gateway.yaml is baked in as
# the default; mount yours over it, and TLS material under /etc/cstagw/tls/).
# Check a configuration with the image itself:
#
#   docker run --rm -v $PWD/my-gateway.yaml:/etc/cstagw/gateway.yaml:ro cstagw -check
#
# The image also carries the CTI simulator (/usr/local/bin/ctisim, for labs:
# see docker-compose.yml) and a tiny HTTP prober used by HEALTHCHECK, since the
# runtime image has no shell and no curl. test/docker-build-check.sh runs the
# build stage's steps on a plain host.

ARG GO_VERSION=1.26

# ---- build ------------------------------------------------------------------
FROM golang:${GO_VERSION} AS build
WORKDIR /src

# Modules first, so that they stay cached while the sources change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# Static binaries: no cgo, no libc, paths trimmed, symbols stripped.
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags "-s -w" -o /out/cstagw ./cmd/cstagw \
 && go build -trimpath -ldflags "-s -w" -o /out/ctisim ./cmd/ctisim \
 && go build -trimpath -ldflags "-s -w" -o /out/healthcheck ./cmd/healthcheck \
 && /out/cstagw -config configs/gateway.yaml -check

# ---- runtime ----------------------------------------------------------------
# distroless/static: CA certificates, /etc/passwd with nonroot (65532), tzdata;
# nothing else.
FROM gcr.io/distroless/static:nonroot

COPY --from=build /out/cstagw /out/ctisim /out/healthcheck /usr/local/bin/
COPY configs/gateway.yaml /etc/cstagw/gateway.yaml

USER 65532:65532

# SIP over UDP and TCP, SIP over TLS (when a tls: listener is configured),
# admin HTTP (/healthz /readyz /metrics /status).
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp

# /healthz answers as long as the process serves HTTP; /readyz additionally
# needs a CTI link up (use it for load-balancer readiness, not for restarts).
# Set CSTAGW_HEALTHCHECK_URL when admin.listen uses another port.
ENV CSTAGW_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/healthcheck", "-q", "-timeout", "4s"]

# Extra arguments are appended: `docker run cstagw -check` validates the
# configuration and exits.
ENTRYPOINT ["/usr/local/bin/cstagw", "-config", "/etc/cstagw/gateway.yaml"]
