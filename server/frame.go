package main

import (
	"encoding/binary"
	"unicode/utf8"
)

// This file is the server side of RFC 6455 framing. noom parses frames itself
// instead of using nbio's websocket.Conn because nbio v1.6.12 answers several
// malformed inputs wrongly (it accepts unmasked client frames, closes invalid
// UTF-8 with 1002 and oversized control frames with 1009) and because owning
// the codec lets a broadcast encode its frame once and queue raw bytes.

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes the server sends (PROTOCOL.md, "Close codes the server uses").
const (
	closeNormal        = 1000
	closeGoingAway     = 1001
	closeProtocolError = 1002
	closeUnsupported   = 1003
	closeInvalidData   = 1007
	closePolicy        = 1008
	closeTooBig        = 1009
	closeTryAgainLater = 1013
)

// maxServerHeaderLen is the longest header of an (unmasked) server frame.
const maxServerHeaderLen = 10

// maxControlPayload is the RFC's limit on ping, pong and close payloads.
const maxControlPayload = 125

// frameHeader is a parsed client frame header.
type frameHeader struct {
	fin    bool
	opcode byte
	length int // payload length
	hlen   int // header length, mask key included
	mask   [4]byte
}

// parseHeader decodes the frame header at the start of b. It returns ok=false
// when b does not yet hold the whole header. A non-zero code means the header
// is invalid and the connection must be failed with that close code; it is
// decided from the header alone, so an attacker's declared length is refused
// before any of its payload is buffered.
func parseHeader(b []byte, maxMessage int) (h frameHeader, ok bool, code int) {
	if len(b) < 2 {
		return h, false, 0
	}
	b0, b1 := b[0], b[1]
	h.fin = b0&0x80 != 0
	h.opcode = b0 & 0x0F
	if b0&0x70 != 0 { // RSV1-3 without a negotiated extension
		return h, true, closeProtocolError
	}
	switch h.opcode {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin { // control frames must not be fragmented
			return h, true, closeProtocolError
		}
	default: // reserved opcodes 3-7 and 0xB-0xF
		return h, true, closeProtocolError
	}
	if b1&0x80 == 0 { // clients must mask every frame (§5.1)
		return h, true, closeProtocolError
	}
	n := int(b1 & 0x7F)
	h.hlen = 2
	switch n {
	case 126:
		if len(b) < 4 {
			return h, false, 0
		}
		n = int(binary.BigEndian.Uint16(b[2:4]))
		if n < 126 { // lengths must use the minimal encoding (§5.2)
			return h, true, closeProtocolError
		}
		h.hlen = 4
	case 127:
		if len(b) < 10 {
			return h, false, 0
		}
		u := binary.BigEndian.Uint64(b[2:10])
		if u>>63 != 0 { // the most significant bit must be 0
			return h, true, closeProtocolError
		}
		if u <= 0xFFFF {
			return h, true, closeProtocolError
		}
		n = int(u) // fits: the top bit is clear
		h.hlen = 10
	}
	if h.opcode >= opClose && n > maxControlPayload {
		return h, true, closeProtocolError
	}
	if n > maxMessage {
		return h, true, closeTooBig
	}
	if len(b) < h.hlen+4 {
		return h, false, 0
	}
	copy(h.mask[:], b[h.hlen:h.hlen+4])
	h.hlen += 4
	h.length = n
	return h, true, 0
}

// unmask XORs p with the mask key in place. It works eight bytes at a time;
// frames are unmasked exactly once, on the poller goroutine.
func unmask(p []byte, key [4]byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	for len(p) >= 8 {
		v := binary.LittleEndian.Uint64(p)
		binary.LittleEndian.PutUint64(p, v^k64)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// serverHeaderLen is the length of an unmasked header for n payload bytes.
func serverHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// putServerHeader writes a FIN frame header for opcode op and n payload bytes
// into dst, which must have room for serverHeaderLen(n) bytes.
func putServerHeader(dst []byte, op byte, n int) {
	dst[0] = 0x80 | op
	switch {
	case n <= 125:
		dst[1] = byte(n)
	case n <= 0xFFFF:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:], uint16(n))
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:], uint64(n))
	}
}

// appendFrame appends one unmasked FIN frame holding payload to dst.
func appendFrame(dst []byte, op byte, payload []byte) []byte {
	var hdr [maxServerHeaderLen]byte
	hl := serverHeaderLen(len(payload))
	putServerHeader(hdr[:], op, len(payload))
	dst = append(dst, hdr[:hl]...)
	return append(dst, payload...)
}

// closeFrame returns a close frame carrying code and a short reason.
func closeFrame(code int, reason string) []byte {
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	p = append(p, reason...)
	return appendFrame(make([]byte, 0, 4+len(p)), opClose, p)
}

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 §7.4 and the IANA registry). 1005, 1006 and 1015 are reserved
// for local use and must never appear on the wire.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// utf8Prefix reports whether b is valid UTF-8 apart from an incomplete but
// so far valid rune at its very end, and returns that tail's length. It lets
// a fragmented text message be checked as it arrives, so invalid UTF-8 fails
// the connection at the first bad fragment (RFC 6455 §8.1, "fail fast").
func utf8Prefix(b []byte) (tail int, ok bool) {
	n := len(b)
	for i := n - 1; i >= 0 && i >= n-utf8.UTFMax+1; i-- {
		c := b[i]
		if c < utf8.RuneSelf {
			break
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[i:]) {
				tail = n - i
			}
			break
		}
	}
	return tail, utf8.Valid(b[:n-tail])
}
