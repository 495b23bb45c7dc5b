package server

import "runtime"

// streamWorkers is how many long-lived goroutines serve RPCs
// (grpc.NumStreamWorkers). Without workers grpc-go starts a goroutine per
// RPC whose stack then grows, by copying, through the handler's deep call
// chains (ECDSA, bbolt, logging): runtime.newstack was ~7% of server CPU in
// BenchmarkIntrospect and BenchmarkRefresh profiles. Workers keep their grown stacks
// (grpc-go replaces each after 65,536 RPCs); when all are busy an RPC gets
// its own goroutine as before. 16 per core covers handlers waiting on a
// group commit's fsync; idle, each costs its stack.
func streamWorkers() uint32 { return uint32(16 * runtime.GOMAXPROCS(0)) }
