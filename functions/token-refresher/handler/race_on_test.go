//go:build race

package handler_test

// raceDetector is whether the tests run under -race.
const raceDetector = true
