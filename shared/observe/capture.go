package observe

import (
	"bytes"
	"sync"
)

// Capture keeps what concurrent loggers write: tests give it to functions
// as their log output and read it back.
type Capture struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

// String is everything written so far.
func (c *Capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}
