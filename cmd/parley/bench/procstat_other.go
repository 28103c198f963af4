//go:build !unix

package bench

import "time"

// selfCPU is unknown off Unix; the report then shows zero.
func selfCPU() time.Duration { return 0 }

// raiseNofile has nothing to raise off Unix.
func raiseNofile() (uint64, error) { return 1 << 20, nil }
