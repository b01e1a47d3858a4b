package main

import (
	"net/http"
	"strconv"
)

// HEAD answers without a body. Go's own server drops what a handler writes
// for a HEAD request; nbio's writes it, or with no Content-Length sends a
// chunked body with its terminator, so a keep-alive client read the next
// response from those bytes ("malformed HTTP response", and Go's transport
// logging an "Unsolicited response ... 0\r\n\r\n" in every test run).
// headless gives a HEAD request's handler a writer that only counts, then
// sends the status and headers with the Content-Length the body would have
// had (unless the handler set one, as the file server does).
func headless(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		hw := &headWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(hw, r)
		if h := w.Header(); h.Get("Content-Length") == "" {
			h.Set("Content-Length", strconv.Itoa(hw.n))
		}
		w.WriteHeader(hw.code)
	})
}

// headWriter holds back a HEAD response's status and counts its body.
type headWriter struct {
	http.ResponseWriter
	code    int
	written bool
	n       int
}

func (h *headWriter) WriteHeader(code int) {
	if !h.written {
		h.code, h.written = code, true
	}
}

func (h *headWriter) Write(b []byte) (int, error) {
	h.written = true
	h.n += len(b)
	return len(b), nil
}
