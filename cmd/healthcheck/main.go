// Command healthcheck probes an HTTP endpoint and exits 0 when it answers
// 200, 1 otherwise. It exists for container health checks in images without
// a shell or curl (distroless, scratch):
//
//	HEALTHCHECK CMD ["/usr/local/bin/healthcheck", "http://127.0.0.1:8080/healthz"]
//
// Usage:
//
//	healthcheck [-timeout 3s] [URL]
//
// The URL defaults to $CSTAGW_HEALTHCHECK_URL, then to
// http://127.0.0.1:8080/healthz (the gateway's admin listener).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

const defaultURL = "http://127.0.0.1:8080/healthz"

func main() {
	timeout := flag.Duration("timeout", 3*time.Second, "give up after this long")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: healthcheck [-timeout 3s] [-q] [URL]\n\nURL defaults to $CSTAGW_HEALTHCHECK_URL, then %s\n\n", defaultURL)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}

	url := os.Getenv("CSTAGW_HEALTHCHECK_URL")
	if flag.NArg() == 1 {
		url = flag.Arg(0)
	}
	if url == "" {
		url = defaultURL
	}

	status, err := probe(url, *timeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "healthcheck: %s: %v\n", url, err)
		os.Exit(1)
	}
	if status != http.StatusOK {
		fmt.Fprintf(os.Stderr, "healthcheck: %s: HTTP %d\n", url, status)
		os.Exit(1)
	}
	if !*quiet {
		fmt.Printf("healthcheck: %s: ok\n", url)
	}
}

// probe GETs url and returns the status code. Redirects are not followed:
// a health endpoint answers itself.
func probe(url string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	return res.StatusCode, nil
}
