//go:build !race

package main

import "github.com/lesismal/nbio"

// raceEnabled reports whether the binary was built with -race.
const raceEnabled = false

// raceAccepted and raceReading annotate nbio's accept hand-off for the
// race detector (race.go); without it they do nothing.
func raceAccepted(*nbio.Conn) {}

func raceReading(*nbio.Conn) {}
