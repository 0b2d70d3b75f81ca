//go:build race

package agent

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
