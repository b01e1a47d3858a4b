package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// The harness speaks just enough RFC 6455 to be a well-behaved client:
// masked frames out, unmasked frames in, fragmentation and control frames
// handled, no extensions. It is written here rather than taken from nbio's
// websocket package so that a delivery costs one pass over bytes that are
// already in the poller's read buffer: no per-message allocation, no copy
// unless a frame straddles two reads, no callback queue.

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxMessage bounds a reassembled server message (a `joined` with a long
// history is the largest the protocol sends); a peer that goes past it is
// broken, not slow.
const maxMessage = 16 << 20

// Errors a server can cause by breaking RFC 6455.
var (
	errMaskedFrame   = errors.New("websocket: server sent a masked frame")
	errReservedBits  = errors.New("websocket: reserved bits set without an extension")
	errBadControl    = errors.New("websocket: fragmented or oversized control frame")
	errBadContinue   = errors.New("websocket: unexpected continuation or data frame")
	errFrameTooLarge = errors.New("websocket: message over the harness limit")
)

// appendClientFrame appends one final, masked frame to dst. The mask key
// comes from the caller: RFC 6455 wants it unpredictable to defeat cache
// poisoning by intermediaries, which math/rand/v2 is for our purpose.
func appendClientFrame(dst []byte, op byte, payload []byte, key uint32) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = binary.BigEndian.AppendUint32(dst, key)
	start := len(dst)
	dst = append(dst, payload...)
	maskBytes(dst[start:], key)
	return dst
}

// maskBytes XORs b with the 4-byte key (big-endian, as written on the wire),
// eight bytes at a time.
func maskBytes(b []byte, key uint32) {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], key)
	w := uint64(binary.LittleEndian.Uint32(k[:]))
	w |= w << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^w)
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&3]
	}
}

// parseFrame decodes the frame at the start of b. n is 0 when b does not yet
// hold the whole frame. A masked payload is unmasked in place (only the
// tests send those; a server never may, see frameReader).
func parseFrame(b []byte) (op byte, fin, masked bool, payload []byte, n int, err error) {
	if len(b) < 2 {
		return 0, false, false, nil, 0, nil
	}
	b0, b1 := b[0], b[1]
	if b0&0x70 != 0 {
		return 0, false, false, nil, 0, errReservedBits
	}
	op, fin, masked = b0&0x0f, b0&0x80 != 0, b1&0x80 != 0
	h := 2
	length := uint64(b1 & 0x7f)
	switch length {
	case 126:
		if len(b) < 4 {
			return 0, false, false, nil, 0, nil
		}
		length, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, false, false, nil, 0, nil
		}
		length, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if op >= opClose && (!fin || length > 125) {
		return 0, false, false, nil, 0, errBadControl
	}
	if length > maxMessage {
		return 0, false, false, nil, 0, errFrameTooLarge
	}
	var key uint32
	if masked {
		if len(b) < h+4 {
			return 0, false, false, nil, 0, nil
		}
		key, h = binary.BigEndian.Uint32(b[h:]), h+4
	}
	end := h + int(length)
	if len(b) < end {
		return 0, false, false, nil, 0, nil
	}
	payload = b[h:end]
	if masked {
		maskBytes(payload, key)
	}
	return op, fin, masked, payload, end, nil
}

// frameHandler receives what a frameReader decodes. The payload slices are
// only valid during the call.
type frameHandler interface {
	onMessage(op byte, payload []byte)
	onPing(payload []byte)
	onCloseFrame(code int, reason []byte)
}

// frameReader reassembles the server's byte stream into messages. It keeps
// bytes only for a frame cut by the end of a read, and for a fragmented
// message, so an idle connection holds no buffer.
type frameReader struct {
	pending []byte // start of a frame whose end has not arrived
	frag    []byte // payload of a fragmented message so far
	fragOp  byte   // its opcode; 0 when no fragmented message is open
}

// feed parses data (which the caller may reuse after feed returns).
func (r *frameReader) feed(data []byte, h frameHandler) error {
	buf := data
	if len(r.pending) > 0 {
		r.pending = append(r.pending, data...)
		buf = r.pending
	}
	for len(buf) > 0 {
		op, fin, masked, payload, n, err := parseFrame(buf)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if masked {
			return errMaskedFrame
		}
		buf = buf[n:]
		if err := r.dispatch(op, fin, payload, h); err != nil {
			return err
		}
	}
	switch {
	case len(buf) == 0:
		// A buffer grown for one big frame is not kept for an idle connection.
		if cap(r.pending) > 64<<10 {
			r.pending = nil
		} else {
			r.pending = r.pending[:0]
		}
	case len(r.pending) > 0:
		r.pending = r.pending[:copy(r.pending, buf)]
	default:
		r.pending = append(r.pending[:0], buf...)
	}
	return nil
}

func (r *frameReader) dispatch(op byte, fin bool, payload []byte, h frameHandler) error {
	switch op {
	case opPing:
		h.onPing(payload)
	case opPong:
	case opClose:
		code := 1005 // RFC 6455 §7.4.1: no status code present
		var reason []byte
		if len(payload) >= 2 {
			code = int(binary.BigEndian.Uint16(payload))
			reason = payload[2:]
		}
		h.onCloseFrame(code, reason)
	case opText, opBinary:
		if r.fragOp != 0 {
			return errBadContinue
		}
		if fin {
			h.onMessage(op, payload)
			return nil
		}
		r.fragOp = op
		r.frag = append(r.frag[:0], payload...)
	case opContinuation:
		if r.fragOp == 0 {
			return errBadContinue
		}
		if len(r.frag)+len(payload) > maxMessage {
			return errFrameTooLarge
		}
		r.frag = append(r.frag, payload...)
		if fin {
			h.onMessage(r.fragOp, r.frag)
			r.fragOp, r.frag = 0, nil
		}
	default:
		return fmt.Errorf("websocket: unknown opcode %d", op)
	}
	return nil
}

// wsGUID is the fixed suffix of the accept-key computation (RFC 6455 §1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey returns the Sec-WebSocket-Accept value a server must send back
// for the client key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// handshake performs the HTTP upgrade on a freshly dialled connection, by
// hand so that the connection can then be handed to a poller. It
// returns the bytes the server sent after the 101 response (its `hello`
// frame, often), which belong to the WebSocket stream.
func handshake(c net.Conn, host, path string, deadline time.Time) ([]byte, error) {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if err := c.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte(req)); err != nil {
		return nil, fmt.Errorf("upgrade request: %w", err)
	}
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= 16<<10 {
				return nil, errors.New("upgrade: response header too large")
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
			if err := checkUpgrade(buf[:end+2], key); err != nil {
				return nil, err
			}
			_ = c.SetDeadline(time.Time{})
			return buf[end+4:], nil
		}
		if err != nil {
			return nil, fmt.Errorf("upgrade response: %w", err)
		}
	}
}

// checkUpgrade validates the status line and the accept key of a response
// header (status line and header lines, each ending in CRLF).
func checkUpgrade(head []byte, key string) error {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return fmt.Errorf("upgrade: malformed status line %q", line)
	}
	if code, _ := strconv.Atoi(string(f[1])); code != 101 {
		return fmt.Errorf("upgrade: HTTP %s", bytes.Join(f[1:], []byte(" ")))
	}
	want := acceptKey(key)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Accept")) {
			if string(bytes.TrimSpace(value)) != want {
				return errors.New("upgrade: wrong Sec-WebSocket-Accept")
			}
			return nil
		}
	}
	return errors.New("upgrade: no Sec-WebSocket-Accept")
}
