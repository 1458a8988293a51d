package main

// A minimal CSTA client straight to a ctisim node (Profile A framing, no
// application session), used to measure the CTI server's own round trip for
// GetDoNotDisturb at a given rate: the latency phase subtracts it from the
// round trip seen through the gateway.

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cstagw/cstagw/csta"
)

type ctiRaw struct {
	nc      net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[int]time.Time
	next    int
	lat     *Lat
	errs    atomic.Uint64
	done    chan struct{}
	frames  [][]byte // one pre-encoded frame body per station
}

func dialCTIRaw(addr string, stations []string) (*ctiRaw, error) {
	nc, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	c := &ctiRaw{nc: nc, pending: map[int]time.Time{}, lat: &Lat{}, done: make(chan struct{})}
	for _, s := range stations {
		b, err := csta.Encode(&csta.Message{Kind: csta.KindGetDoNotDisturb, Device: csta.Dev(s)}, csta.NSEd4)
		if err != nil {
			nc.Close()
			return nil, err
		}
		c.frames = append(c.frames, b)
	}
	go c.read()
	return c, nil
}

func (c *ctiRaw) read() {
	defer close(c.done)
	fr := csta.NewFrameReader(c.nc, csta.FrameOptions{Profile: csta.ProfileA})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		now := time.Now()
		c.mu.Lock()
		t, ok := c.pending[f.InvokeID]
		delete(c.pending, f.InvokeID)
		c.mu.Unlock()
		if !ok {
			continue // an event or a late answer
		}
		if !containsStr(f.Payload, "GetDoNotDisturbResponse") {
			c.errs.Add(1)
		}
		c.lat.Add(now.Sub(t))
	}
}

// send writes one GetDoNotDisturb for station i.
func (c *ctiRaw) send(i int) error {
	c.mu.Lock()
	var id int
	for tries := 0; ; tries++ {
		c.next = c.next%9999 + 1
		if _, busy := c.pending[c.next]; !busy {
			id = c.next
			break
		}
		if tries > 9999 {
			c.mu.Unlock()
			return fmt.Errorf("every invoke id is outstanding")
		}
	}
	frame, err := csta.AppendFrame(nil, id, c.frames[i%len(c.frames)], csta.FrameOptions{Profile: csta.ProfileA})
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.pending[id] = time.Now()
	c.mu.Unlock()
	c.wmu.Lock()
	_, err = c.nc.Write(frame)
	c.wmu.Unlock()
	return err
}

func (c *ctiRaw) close() {
	_ = c.nc.Close()
	<-c.done
}

// measureCTI runs GetDoNotDisturb straight to a ctisim node at rate for dur
// and returns the round trips.
func measureCTI(addr string, stations []string, rate float64, dur time.Duration) (Summary, uint64, error) {
	c, err := dialCTIRaw(addr, stations)
	if err != nil {
		return Summary{}, 0, err
	}
	defer c.close()
	i := 0
	var sendErr error
	pace(rate, dur, nil, func() {
		if err := c.send(i); err != nil && sendErr == nil {
			sendErr = err
		}
		i++
	})
	_ = waitFor(3*time.Second, "CTI answers", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pending) == 0
	})
	return c.lat.Summary(), c.errs.Load(), sendErr
}
