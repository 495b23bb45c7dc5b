package server

import "context"

// UpgradeHashForTest exposes upgradeHash to the package's external tests.
func UpgradeHashForTest(ctx context.Context, s *Server, userID, verified, pw string) (string, bool) {
	return s.upgradeHash(ctx, userID, verified, pw)
}
