package units

import "testing"

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "1m": 1 << 20, "512k": 512 << 10, "2G": 2 << 30, "100": 100, " 10M ": 10 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "m", "-1m", "1t", "1.5m", "99999999999999999999g"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q): want error", bad)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1m", "512k", "9g", "-1", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if n, err := ParseSize(v); err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", v, n)
		}
	})
}
