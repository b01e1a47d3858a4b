package main

import (
	"os"
	"syscall"
	"unsafe"
)

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind(2)
// takes the address only and connect(2) picks the port, per destination.
// Without it, binding a source address reserves a port for every
// destination at once and runs out after about 9,000-14,000 connections
// on this machine (notes/perf.md §3).
const ipBindAddressNoPort = 24

// bindNoPort is a net.Dialer Control function setting IP_BIND_ADDRESS_NO_PORT.
func bindNoPort(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// isTerminal reports whether f is a terminal (TCGETS succeeds).
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

// cpuMicros returns this process's user+system CPU time in µs.
func cpuMicros() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano()/1e3 + ru.Stime.Nano()/1e3
}

// peerClosed reports whether a socket's TCP state shows the other side gone
// (anything but ESTABLISHED: a FIN made it CLOSE_WAIT, a reset CLOSE).
func peerClosed(rc syscall.RawConn) bool {
	if rc == nil {
		return false
	}
	var info syscall.TCPInfo
	var errno syscall.Errno
	err := rc.Control(func(fd uintptr) {
		n := uint32(unsafe.Sizeof(info))
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	})
	const tcpEstablished = 1
	return err == nil && errno == 0 && info.State != tcpEstablished
}
