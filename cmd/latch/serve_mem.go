package main

import "runtime/debug"

// releaseStartupMemory returns to the OS the memory that starting up left
// behind as garbage, above all the argon2id block (19 MiB at the default
// parameters) of the dummy hash the password hasher computes once at
// construction. Without it an idle server keeps that block resident until
// the next forced collection and the scavenger catch up, minutes later.
func releaseStartupMemory() { debug.FreeOSMemory() }
