// Package clocktest is the manual clock tests inject where a package takes
// a Now func() time.Time: it moves only when the test advances it.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a manual clock. Its methods are safe for concurrent use, so
// the code under test may read it from other goroutines.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock that reads start until advanced.
func New(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
