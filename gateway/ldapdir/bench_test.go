package ldapdir

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cstagw/cstagw/gateway/ldapdir/ldaptest"
)

// BenchmarkLoad80k loads a directory of 80,000 Lync-style users (seeded
// with one offline slapadd) and reports the time of one load and the heap
// the result keeps. CSTAGW_BENCH_LDAP_USERS changes the count.
func BenchmarkLoad80k(b *testing.B) {
	n := 80000
	if v, err := strconv.Atoi(os.Getenv("CSTAGW_BENCH_LDAP_USERS")); err == nil && v > 0 {
		n = v
	}
	var ldif strings.Builder
	for i := 0; i < n; i++ {
		ldif.WriteString(ldaptest.UserLDIF(fmt.Sprintf("u%06d", i), fmt.Sprintf("sip:user%06d@corp.example.net", i),
			[]string{fmt.Sprintf("tel:+1206%07d;ext=%d", i, 100000+i)}))
	}
	seedStart := time.Now()
	srv := ldaptest.New(b, ldif.String())
	srv.Start()
	b.Logf("seeded %d users in %s", n, time.Since(seedStart).Round(time.Millisecond))

	c := Config{
		URL: srv.URL, BindDN: ldaptest.RootDN, PasswordEnv: "CSTAGW_BENCH_LDAP_PW", BaseDN: ldaptest.People,
		Device: DeviceRule{Match: `ext=(\d+)`}, Refresh: time.Minute, Timeout: time.Minute,
	}.WithDefaults()
	b.Setenv("CSTAGW_BENCH_LDAP_PW", ldaptest.RootPW)

	b.ReportAllocs()
	b.ResetTimer()
	var users []User
	for i := 0; i < b.N; i++ {
		r, err := c.Search(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Users) != n {
			b.Fatalf("%d users, want %d", len(r.Users), n)
		}
		users = r.Users
	}
	b.StopTimer()

	// The heap the directory keeps once loaded.
	var before, after runtime.MemStats
	users = nil
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := c.Search(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	users = r.Users
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(1<<20), "MiB-kept")
	b.ReportMetric(float64(n), "users")
	runtime.KeepAlive(users)
}
