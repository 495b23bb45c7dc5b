package bench

import (
	"os/exec"
	"testing"
)

// TestStopEndsStartedProcess: a child started through start (Latch or the
// Hydra peer) is ended by stop, and stop returns once it has exited.
func TestStopEndsStartedProcess(t *testing.T) {
	s, err := start(exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	s.stop()
	select {
	case <-s.exited:
	default:
		t.Fatal("stop returned before the process exited")
	}
	if s.cmd.ProcessState == nil || s.cmd.ProcessState.Success() {
		t.Fatalf("process state %v, want ended by the interrupt", s.cmd.ProcessState)
	}
	s.stop() // a second stop is a no-op
}
