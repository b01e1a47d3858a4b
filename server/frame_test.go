package main

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unicode/utf8"
)

func TestParseHeader(t *testing.T) {
	mask := []byte{1, 2, 3, 4}
	hdr := func(b ...byte) []byte { return append(b, mask...) }
	ext16 := func(n int) []byte { return hdr(0x81, 0x80|126, byte(n>>8), byte(n)) }
	ext64 := func(op byte, n uint64) []byte {
		b := []byte{op, 0x80 | 127}
		return hdr(binary.BigEndian.AppendUint64(b, n)...)
	}
	cases := []struct {
		name   string
		in     []byte
		ok     bool
		code   int
		length int
	}{
		{"short", []byte{0x81}, false, 0, 0},
		{"no mask key yet", []byte{0x81, 0x85, 1, 2}, false, 0, 0},
		{"text 5", hdr(0x81, 0x85), true, 0, 5},
		{"16-bit", ext16(300), true, 0, 300},
		{"16-bit not minimal", ext16(100), true, closeProtocolError, 0},
		{"64-bit", ext64(0x81, 65536), true, 0, 65536},
		{"64-bit not minimal", ext64(0x81, 300), true, closeProtocolError, 0},
		{"64-bit top bit", ext64(0x81, 1<<63), true, closeProtocolError, 0},
		{"64-bit huge", ext64(0x81, 1<<40), true, closeTooBig, 0},
		{"over limit", ext64(0x81, 1<<17), true, closeTooBig, 0},
		{"unmasked", []byte{0x81, 0x05}, true, closeProtocolError, 0},
		{"rsv1", hdr(0xC1, 0x80), true, closeProtocolError, 0},
		{"rsv3", hdr(0x91, 0x80), true, closeProtocolError, 0},
		{"opcode 3", hdr(0x83, 0x80), true, closeProtocolError, 0},
		{"opcode 0xB", hdr(0x8B, 0x80), true, closeProtocolError, 0},
		{"fragmented ping", hdr(0x09, 0x80), true, closeProtocolError, 0},
		{"ping 125", hdr(0x89, 0x80|125), true, 0, 125},
		{"ping 126", hdr(0x89, 0x80|126, 0, 126), true, closeProtocolError, 0},
		{"close with 64-bit length", ext64(0x88, 1<<20), true, closeProtocolError, 0},
		{"continuation", hdr(0x80, 0x80), true, 0, 0},
	}
	for _, tc := range cases {
		h, ok, code := parseHeader(tc.in, 64<<10)
		if ok != tc.ok || code != tc.code || (code == 0 && ok && h.length != tc.length) {
			t.Errorf("%s: ok=%v code=%d len=%d, want ok=%v code=%d len=%d", tc.name, ok, code, h.length, tc.ok, tc.code, tc.length)
		}
		if code == 0 && ok && (h.hlen != len(tc.in) || !bytes.Equal(h.mask[:], mask)) {
			t.Errorf("%s: header length %d of %d, mask %v", tc.name, h.hlen, len(tc.in), h.mask)
		}
	}
}

func TestUnmask(t *testing.T) {
	key := [4]byte{0xA1, 0xB2, 0xC3, 0xD4}
	for n := 0; n < 40; n++ {
		p := bytes.Repeat([]byte{0x5A}, n)
		want := make([]byte, n)
		for i := range p {
			want[i] = p[i] ^ key[i%4]
		}
		unmask(p, key)
		if !bytes.Equal(p, want) {
			t.Fatalf("unmask of %d bytes: %x, want %x", n, p, want)
		}
	}
}

func TestUTF8Prefix(t *testing.T) {
	fox := []byte("🦊") // 4 bytes
	cases := []struct {
		in   []byte
		tail int
		ok   bool
	}{
		{[]byte("abc"), 0, true},
		{fox, 0, true},
		{fox[:1], 1, true},
		{fox[:3], 3, true},
		{append([]byte("ab"), fox[:2]...), 2, true},
		{[]byte{0xff}, 0, false},
		{[]byte{0xC0, 0x80}, 0, false},      // overlong
		{[]byte{0xED, 0xA0}, 0, false},      // surrogate, known bad at the second byte
		{[]byte{0xF4, 0x90}, 0, false},      // above U+10FFFF
		{[]byte{'a', 0x80}, 0, false},       // stray continuation
		{[]byte{0xE2, 0x82, 'a'}, 0, false}, // cut short by ASCII
		{append(fox[:2], fox...), 0, false}, // cut short by another rune
	}
	for _, tc := range cases {
		tail, ok := utf8Prefix(tc.in)
		if tail != tc.tail || ok != tc.ok {
			t.Errorf("%x: tail %d ok %v, want %d %v", tc.in, tail, ok, tc.tail, tc.ok)
		}
	}
	// Any split of a valid string is a valid prefix, and the pieces check
	// out one after another as the parser checks fragments.
	s := []byte("añ€🦊z🦊")
	for cut := 0; cut <= len(s); cut++ {
		tail, ok := utf8Prefix(s[:cut])
		if !ok || !utf8.Valid(s[:cut-tail]) {
			t.Fatalf("cut at %d: tail %d ok %v", cut, tail, ok)
		}
	}
}

func TestServerHeader(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		f := appendFrame(nil, opText, make([]byte, n))
		if len(f) != serverHeaderLen(n)+n || f[0] != 0x81 || f[1]&0x80 != 0 {
			t.Fatalf("frame of %d: header %x", n, f[:4])
		}
	}
}
