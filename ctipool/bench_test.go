package ctipool

import (
	"context"
	"testing"
	"time"

	"github.com/cstagw/cstagw/csta"
)

// benchRoundTrips measures request/response round trips against ctisim over
// n links (one node each), with b.N requests spread over parallel callers.
// Report: go test ./ctipool -run '^$' -bench RoundTrip
func benchRoundTrips(b *testing.B, n int) {
	sim := startSim(b, n, nil)
	cfg := testConfig(sim, true)
	cfg.HeartbeatInterval = 10 * time.Second
	cfg.RequestTimeout = 10 * time.Second
	p, _ := startPool(b, cfg)
	for _, l := range p.Links() {
		waitUp(b, l, 1)
	}
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		req := &csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev("40001")}
		for pb.Next() {
			l, err := p.Place()
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := l.Do(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

func BenchmarkRoundTrip1Link(b *testing.B)  { benchRoundTrips(b, 1) }
func BenchmarkRoundTrip8Links(b *testing.B) { benchRoundTrips(b, 8) }
