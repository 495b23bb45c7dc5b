package etcd

import "time"

// The lease options below are for tests, which need leases that end within
// seconds; a deployment keeps the defaults.

// WithLeaseSlack sets how long past its expiry a row is kept before its
// lease deletes it (default 5m). It must exceed the clock skew between Latch
// processes: a denied jti deleted before every process considers its token
// expired would make that token valid again on a process whose clock is
// behind. It must therefore exceed that skew plus the verifiers' leeway
// (at most tokens.MaxLeeway, 30s); the default leaves 4.5 minutes of skew.
func WithLeaseSlack(d time.Duration) Option { return func(o *options) { o.leaseSlack = d } }

// WithLeaseBucket sets the granularity of lease expiries (default 5m): rows
// whose leases would end within one bucket share a lease, so the number of
// leases stays small. Rows live up to one bucket longer.
func WithLeaseBucket(d time.Duration) Option { return func(o *options) { o.leaseBucket = d } }
