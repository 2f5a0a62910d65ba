package limits

import "sync"

// Channels counts the calls in progress on each trunk against the trunk's channel limit (asterisk.trunks[].
// max_channels), so that a trunk at its limit passes the call to the next one instead of letting the carrier
// refuse it. It is safe for concurrent use; state lives in this process.
type Channels struct {
	mu   sync.Mutex
	used map[string]int
}

// NewChannels returns an empty counter.
func NewChannels() *Channels { return &Channels{used: map[string]int{}} }

// Acquire takes one channel of trunk when fewer than max are in use (max 0: no limit). It returns false when the
// trunk is full; otherwise release gives the channel back and is safe to call more than once.
func (c *Channels) Acquire(trunk string, max int) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max > 0 && c.used[trunk] >= max {
		return func() {}, false
	}
	c.used[trunk]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.used[trunk]--; c.used[trunk] <= 0 {
				delete(c.used, trunk)
			}
		})
	}, true
}

// InUse is how many channels of trunk are taken.
func (c *Channels) InUse(trunk string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used[trunk]
}
