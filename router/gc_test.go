package router

import "testing"

func TestGCPercentFor(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{2 * mb, 400}, // a small table: four times its live heap
		{8 * mb, 200}, // 16 MB of headroom
		{16 * mb, 100},
		{500 * mb, 100}, // never below Go's default
	} {
		if got := gcPercentFor(c.live, 16*mb); got != c.want {
			t.Errorf("gcPercentFor(%d MB) = %d, want %d", c.live/mb, got, c.want)
		}
	}
}
