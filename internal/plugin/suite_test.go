package plugin

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// The tests that need an API server share one (etcd and kube-apiserver,
// envtest's, with the CRD; no controller: tests write the status they
// want), started by the first of them, so the pure tests run without it.
var (
	apiOnce    sync.Once
	apiCluster *cluster.Cluster
	apiErr     error
	k8s        client.WithWatch
)

func TestMain(m *testing.M) {
	code := m.Run()
	if apiCluster != nil {
		if err := apiCluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the API server:", err)
		}
	}
	os.Exit(code)
}

// apiServer starts the shared API server on first use.
func apiServer(t *testing.T) *cluster.Cluster {
	t.Helper()
	apiOnce.Do(func() {
		if os.Getenv("KUBEBUILDER_ASSETS") == "" {
			apiErr = fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test` (it builds bin/ and points envtest at it)")
			return
		}
		apiCluster, apiErr = cluster.Start(context.Background(), cluster.Options{
			ControlPlaneOnly: true,
			CRDDirs:          []string{filepath.Join("..", "..", "config", "crd", "bases")},
		})
		if apiErr == nil {
			k8s, apiErr = client.NewWithWatch(apiCluster.Config, client.Options{Scheme: scheme})
		}
	})
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	return apiCluster
}

// plugin runs the plugin's command in this process with kubeconfig, as
// `kubectl nodeagentset ARGS` would, and returns what it printed.
func plugin(t *testing.T, kubeconfig string, stdin []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := testStreams()
	streams.In, streams.Out, streams.ErrOut = bytes.NewReader(stdin), &out, &errOut
	cmd := NewCommand(streams)
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func mustPlugin(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, errOut, err := plugin(t, kubeconfig, nil, args...)
	if err != nil {
		t.Fatalf("kubectl nodeagentset %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// kubectl runs the real kubectl against the test API server: $KUBECTL if
// set, else the one in $KUBEBUILDER_ASSETS (bin/kubectl), else PATH's.
func kubectl(t *testing.T, kubeconfig string, stdin []byte, args ...string) string {
	t.Helper()
	bin := cmp.Or(os.Getenv("KUBECTL"), filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"))
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("kubectl"); err != nil {
			t.Fatal("no kubectl in $KUBEBUILDER_ASSETS or on PATH")
		}
	}
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}
