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

// Golden compares got with the file at path; UPDATE_GOLDEN=1 rewrites the
// file instead, for a change of output meant to be reviewed as a diff.
func Golden(t testing.TB, path, got string) {
	t.Helper()
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- want\n%s--- got\n%s", filepath.Base(path), want, got)
	}
}
