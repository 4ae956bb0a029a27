package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// /readyz answers ok only once the manager's caches have synced: a manager
// that cannot list what it serves is not ready (it answered ok while it
// could not, and exited two minutes later).
func TestReadinessReflectsSyncedCaches(t *testing.T) {
	c := startCluster(t, cluster.Options{ControlPlaneOnly: true})
	probe := func(user string, groups ...string) string {
		_, kubeconfig, err := c.AddUser(user, groups...)
		if err != nil {
			t.Fatal(err)
		}
		port, err := cluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.StartProcess(user, managerBinary, "--kubeconfig="+kubeconfig, "--metrics-bind-address=0",
			fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", port)); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	// No permission at all: nothing can be listed, no cache syncs.
	denied := probe("nobody")
	waitFor(t, 60*time.Second, "the unprivileged manager's /healthz", func() (bool, string) {
		code := get(denied + "/healthz")
		return code == http.StatusOK, fmt.Sprint(code)
	})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if code := get(denied + "/readyz"); code == http.StatusOK {
			t.Fatal("/readyz answered 200 while the manager could list nothing")
		}
	}

	allowed := probe("nodeagentset:manager", "system:masters")
	waitFor(t, 60*time.Second, "the manager's /readyz", func() (bool, string) {
		code := get(allowed + "/readyz")
		return code == http.StatusOK, fmt.Sprint(code)
	})
}

// waitFor polls cond every 100ms until it holds, failing the test after
// timeout with cond's last description of what it saw.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
