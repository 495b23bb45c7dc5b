//go:build !linux

package lowprio

const supported = false

func lowerPriority(int) error { return nil }
