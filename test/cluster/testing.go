package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// StartForTest starts a cluster for t and stops it when t ends, whether the
// test passed or not. Logs go to $CLUSTER_LOG_DIR/<test name> when that is
// set (make test sets it to _output/logs), else to a temporary folder that
// is printed when the test fails.
func StartForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		if root := os.Getenv("CLUSTER_LOG_DIR"); root != "" {
			opts.Dir = filepath.Join(root, safeName(t.Name()))
			_ = os.RemoveAll(opts.Dir)
		}
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting local cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs: %s", c.logDir())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping local cluster: %v", err)
		}
	})
	return c
}
