//go:build unix && !linux

package main

import (
	"os"
	"syscall"
)

// bindNoPort does nothing off Linux: IP_BIND_ADDRESS_NO_PORT is Linux's.
func bindNoPort(network, address string, rc syscall.RawConn) error { return nil }

// isTerminal approximates a terminal check by the character-device bit.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// cpuMicros returns this process's user+system CPU time in µs.
func cpuMicros() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano()/1e3 + ru.Stime.Nano()/1e3
}

// peerClosed cannot tell off Linux (no TCP_INFO state): it says no.
func peerClosed(rc syscall.RawConn) bool { return false }
