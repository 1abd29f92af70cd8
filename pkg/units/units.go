// Package units parses the sizes operators write in flags and etcd
// settings (router bodySize, logger --rotate-size, logspout --max-line).
package units

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses nginx-style sizes: a number of bytes with an optional
// unit k, m or g (case-insensitive, powers of 1024). "0" means unlimited.
func ParseSize(v string) (int64, error) {
	v = strings.TrimSpace(strings.ToLower(v))
	if v == "" {
		return 0, errors.New("empty size")
	}
	mult := int64(1)
	switch v[len(v)-1] {
	case 'k':
		mult = 1 << 10
	case 'm':
		mult = 1 << 20
	case 'g':
		mult = 1 << 30
	}
	if mult > 1 {
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a size like 1m, 512k or 0 (unlimited)")
	}
	return n * mult, nil
}
