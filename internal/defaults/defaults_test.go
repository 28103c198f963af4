package defaults

import (
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{{0, time.Second}, {-1, time.Second}, {time.Millisecond, time.Millisecond}} {
		v := tc.in
		Set(&v, time.Second)
		if v != tc.want {
			t.Errorf("Set(%v, 1s) = %v, want %v", tc.in, v, tc.want)
		}
	}
}
