//go:build race

package webhook

// raceEnabled is set when the tests run with -race, under which a
// sync.Pool drops a share of what it is given on purpose.
const raceEnabled = true
