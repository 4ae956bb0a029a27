// Command manager runs the NodeAgentSet controller.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/controller"
)

type options struct {
	leaderElect             bool
	leaderElectionNamespace string
	metricsAddr             string
	secureMetrics           bool
	probeAddr               string
	pprofAddr               string
	maxConcurrentReconciles int
	qps                     float64
	burst                   int
	metricsCertDir          string
	leaseDuration           time.Duration
	renewDeadline           time.Duration
	retryPeriod             time.Duration
	shutdownTimeout         time.Duration
}

func main() {
	var o options
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader so that only one replica is active.")
	flag.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's namespace).")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint; \"0\" disables it.")
	flag.BoolVar(&o.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, with authentication and authorization by the API server.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; \"0\" disables them.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "Address of Go's /debug/pprof endpoints, for profiling (e.g. 127.0.0.1:6060); \"0\" disables them.")
	flag.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", 4, "NodeAgentSets reconciled in parallel.")
	flag.Float64Var(&o.qps, "kube-api-qps", 100, "Client-side limit of API requests per second.")
	flag.IntVar(&o.burst, "kube-api-burst", 200, "Client-side burst of API requests.")
	flag.StringVar(&o.metricsCertDir, "metrics-cert-dir", "", "Folder holding tls.crt and tls.key for the metrics endpoint (reloaded when they change); empty: a self-signed certificate.")
	// controller-runtime's defaults; the Helm chart exposes them.
	flag.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 15*time.Second, "How long a standby waits after the leader's last renewal before taking over.")
	flag.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it steps down; below the lease duration.")
	flag.DurationVar(&o.retryPeriod, "leader-election-retry-period", 2*time.Second, "Interval between tries to take or renew the lease.")
	// The pod's terminationGracePeriodSeconds must exceed it (the chart
	// derives one from the other), or the kubelet kills the manager mid-write.
	flag.DurationVar(&o.shutdownTimeout, "graceful-shutdown-timeout", 30*time.Second, "On SIGTERM, how long in-flight reconciles may take before the manager exits.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(o); err != nil {
		ctrl.Log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(nasv1alpha1.AddToScheme(scheme))

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst

	metrics := metricsserver.Options{
		BindAddress:   o.metricsAddr,
		SecureServing: o.secureMetrics,
		CertDir:       o.metricsCertDir,
		// HTTP/2 stays off: it is exposed to the HTTP/2 rapid-reset attacks.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
	if o.metricsCertDir != "" {
		// controller-runtime falls back to a self-signed certificate when the
		// files are missing, which a scraper that verifies would refuse
		// later; say so now instead.
		for _, f := range []string{"tls.crt", "tls.key"} {
			if _, err := os.Stat(filepath.Join(o.metricsCertDir, f)); err != nil {
				return fmt.Errorf("--metrics-cert-dir: %w", err)
			}
		}
	}
	if o.secureMetrics {
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   controller.CacheOptions(),
		Metrics:                 metrics,
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "nodeagentset.io",
		LeaderElectionNamespace: o.leaderElectionNamespace,
		// Stepping down at once on SIGTERM lets a new leader start within a
		// second instead of after the lease expires.
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
		GracefulShutdownTimeout:       &o.shutdownTimeout,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controller.NewReconciler(mgr).SetupWithManager(ctx, mgr, o.maxConcurrentReconciles); err != nil {
		return fmt.Errorf("setting up controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", cachesSynced(mgr)); err != nil {
		return err
	}
	ctrl.Log.Info("Starting manager", "qps", o.qps, "burst", o.burst, "maxConcurrentReconciles", o.maxConcurrentReconciles)
	return mgr.Start(ctx)
}

// cachesSynced is ready once every informer of the manager has synced: a
// manager that cannot list what it serves (no permission, an object it
// cannot decode) serves nothing, and must not say it is ready.
func cachesSynced(mgr ctrl.Manager) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), 500*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches not synced yet")
		}
		return nil
	}
}
