package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// managerBinary is the manager built once for every test of the package,
// run as its own process like in a cluster, so tests can kill it and read
// its memory from /proc.
var managerBinary string

// pluginBinary is kubectl-nodeagentset, built once.
var pluginBinary string

var scheme = runtime.NewScheme()

func TestMain(m *testing.M) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(nasv1alpha1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	// The tests' own clients log nothing worth reading.
	ctrllog.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "nodeagentset-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	managerBinary = filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", managerBinary, "../../cmd/manager")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the manager:", err)
		os.Exit(1)
	}
	pluginBinary = filepath.Join(dir, "kubectl-nodeagentset")
	build = exec.Command("go", "build", "-o", pluginBinary, "../../cmd/kubectl-nodeagentset")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the kubectl plugin:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// startCluster starts a local cluster with the CRD installed.
func startCluster(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	opts.CRDDirs = append(opts.CRDDirs, filepath.Join("..", "..", "config", "crd", "bases"))
	return cluster.StartForTest(t, opts)
}

// startManager runs the manager against c as its own user and returns a
// controller-runtime client for the test.
func startManager(t *testing.T, c *cluster.Cluster) client.Client {
	t.Helper()
	if err := c.StartProcess("manager", managerBinary, managerArgs(t, c, "nodeagentset:manager")...); err != nil {
		t.Fatal(err)
	}
	return startClient(t, c)
}

// envInt reads a size from the environment, for running a test bigger
// than make test does (NAS_E2E_NODES=500 go test ./test/e2e -run ...).
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
