package webhook

import (
	"strconv"
	"strings"
)

// number is a JSON number. Integers that fit int64 compare exactly as
// integers; the rest compare as float64 and, where two round to the same
// float64, as decimals, so that 9007199254740993 stays above
// 9007199254740992.0.
type number struct {
	text  string
	f     float64
	i     int64
	isInt bool
}

// parseNumber parses s when it is a JSON number (strconv alone would take
// "Inf", "0x1p3" or "1_000").
func parseNumber(s string) (number, bool) {
	if !isJSONNumber(s) {
		return number{}, false
	}
	// Only integers go to ParseInt: a failed parse allocates its error, and
	// matching an event must not allocate.
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return number{text: s, f: float64(i), i: i, isInt: true}, true
		}
	}
	// Beyond float64's range ParseFloat gives ±Inf, which still orders.
	f, _ := strconv.ParseFloat(s, 64)
	return number{text: s, f: f}, true
}

func (a number) cmp(b number) int {
	if a.isInt && b.isInt {
		return cmpOrdered(a.i, b.i)
	}
	// Rounding to float64 never reverses an order, so only ties need the
	// exact comparison.
	if c := cmpOrdered(a.f, b.f); c != 0 {
		return c
	}
	return cmpDecimal(a.text, b.text)
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpDecimal compares two JSON numbers exactly, without allocating, as
// sign, then decimal exponent, then digits.
func cmpDecimal(a, b string) int {
	negA, digA, expA := decimal(a)
	negB, digB, expB := decimal(b)
	switch {
	case digA == "" && digB == "":
		return 0
	case negA != negB || digA == "" || digB == "":
		// Different signs, or one is zero: the sign of a-b is plain.
		sa, sb := sign(negA, digA), sign(negB, digB)
		return cmpOrdered(int64(sa), int64(sb))
	}
	c := cmpOrdered(expA, expB)
	if c == 0 {
		c = strings.Compare(digA, digB) // trailing zeros are stripped, so a prefix is smaller
	}
	if negA {
		return -c
	}
	return c
}

func sign(neg bool, digits string) int {
	switch {
	case digits == "":
		return 0
	case neg:
		return -1
	}
	return 1
}

// decimal splits a JSON number into its sign, its significant digits
// (s, "" for zero) and the exponent e of its value, 0.s × 10^e. Only a
// number with both an integer part and a fraction costs a new string, and
// only on a float64 tie.
func decimal(n string) (neg bool, digits string, exp float64) {
	if n != "" && n[0] == '-' {
		neg, n = true, n[1:]
	}
	mant, e10 := n, 0.0
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		mant = n[:i]
		e, _ := strconv.ParseFloat(n[i+1:], 64) // huge exponents stay ordered as floats
		e10 = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		// 0.000123: the digits start after the fraction's leading zeros.
		trimmed := strings.TrimLeft(frac, "0")
		exp = e10 - float64(len(frac)-len(trimmed))
		return neg, strings.TrimRight(trimmed, "0"), exp
	}
	exp = e10 + float64(len(intPart))
	if frac == "" {
		return neg, strings.TrimRight(intPart, "0"), exp
	}
	return neg, strings.TrimRight(intPart+frac, "0"), exp
}

func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// shortest says whether the JSON number s is written the one way that
// needs no exponent, no leading or trailing zero and no minus before 0:
// two such texts are equal exactly when their numbers are.
func shortest(s string) bool {
	if s == "-0" {
		return false
	}
	digits := s
	if digits != "" && digits[0] == '-' {
		digits = digits[1:]
	}
	switch {
	case digits == "" || digits[0] < '0' || digits[0] > '9':
		return false
	case len(digits) > 1 && digits[0] == '0' && digits[1] != '.':
		return false
	}
	point := false
	for i := 0; i < len(digits); i++ {
		switch c := digits[i]; {
		case c == '.':
			point = true
		case c < '0' || c > '9':
			return false // an exponent, or not a number
		}
	}
	return !point || digits[len(digits)-1] != '0' && digits[len(digits)-1] != '.'
}
