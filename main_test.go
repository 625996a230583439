package webhook

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine running: no
// Dispatcher goroutine may outlive Close, nor a connection its transport.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
