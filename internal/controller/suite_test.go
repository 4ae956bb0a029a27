package controller_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/controller"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// The suite runs one envtest API server (etcd + kube-apiserver, no
// scheduler, no kubelet, no garbage collector) and the controller in a
// manager, as in production. Tests keep out of each other's way with their
// own namespace and their own node label.
var (
	k8s client.WithWatch
	// reconciler is the manager's, for tests that look at what it keeps.
	reconciler *controller.Reconciler
	scheme     = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(nasv1alpha1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test` (it builds bin/ and points envtest at it)")
		return 1
	}
	if testing.Verbose() {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	}
	// envtest's etcd and kube-apiserver, through test/cluster so that they
	// are stopped even if this binary is killed (a go test timeout, say).
	// No scheduler, kubelet or garbage collector: the tests play those.
	c, err := cluster.Start(context.Background(), cluster.Options{
		ControlPlaneOnly: true,
		CRDDirs:          []string{filepath.Join("..", "..", "config", "crd", "bases")},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer func() { _ = c.Stop() }()
	cfg := c.Config

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controller.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating manager:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reconciler = controller.NewReconciler(mgr)
	if err := reconciler.SetupWithManager(ctx, mgr, 4); err != nil {
		fmt.Fprintln(os.Stderr, "setting up controller:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	// Tests talk to the API server directly, not through the manager's cache.
	if k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "creating client:", err)
		return 1
	}
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	return code
}

// timeout bounds every wait; generous, since a loaded CI machine is slow.
const timeout = 30 * time.Second

// eventually polls cond until it holds or timeout passes, then fails the
// test with cond's last description of what it saw.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holds checks that cond stays true for d (used for "nothing happens").
func holds(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ok, seen := cond(); !ok {
			t.Fatalf("%s stopped holding: %s", what, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
