package webhook

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

func TestShortestNumbers(t *testing.T) {
	for _, s := range []string{"0", "1", "-1", "10", "0.5", "-0.5", "12.25", "123456789012345678901234567890"} {
		require.True(t, shortest(s), s)
	}
	for _, s := range []string{"-0", "1.0", "0.50", "1e2", "1E2", "10e0", "-0.0", "0.0", "00", "01", "0.", "1.", "-", "", ".5", "-.5", "1e", "x"} {
		require.False(t, shortest(s), s)
	}
	// The shortcut in jsonEqual: it must agree with comparing the numbers.
	texts := []string{"0", "-0", "0.0", "1", "1.0", "1.00", "1e0", "10", "1e1", "0.1", "1e-1", "0.10",
		"-1", "-1.0", "12.5", "12.50", "125e-1", "9007199254740993", "9007199254740992", "9007199254740993.0"}
	for _, a := range texts {
		for _, b := range texts {
			x, _ := parseNumber(a)
			y, _ := parseNumber(b)
			require.Equal(t, x.cmp(y) == 0, jsonEqual(gjson.Parse(a).Raw, gjson.Parse(b).Raw), "%s and %s", a, b)
		}
	}
}
