package limits

import (
	"sync"
	"testing"
)

func TestChannelsPerTrunk(t *testing.T) {
	c := NewChannels()
	r1, ok1 := c.Acquire("uk", 2)
	r2, ok2 := c.Acquire("uk", 2)
	_, ok3 := c.Acquire("uk", 2)
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("limit 2: got %v %v %v", ok1, ok2, ok3)
	}
	if _, ok := c.Acquire("backup", 0); !ok {
		t.Fatal("no limit refused")
	}
	r1()
	r1() // twice is once
	if c.InUse("uk") != 1 {
		t.Fatalf("in use %d after one release", c.InUse("uk"))
	}
	if _, ok := c.Acquire("uk", 2); !ok {
		t.Fatal("freed channel not reusable")
	}
	r2()
}

func TestChannelsConcurrent(t *testing.T) {
	c := NewChannels()
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, ok := c.Acquire("t", 10); ok {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if granted != 10 || c.InUse("t") != 10 {
		t.Fatalf("granted %d, in use %d; want 10", granted, c.InUse("t"))
	}
}
