// Package cluster runs a real local Kubernetes cluster for end-to-end tests,
// benchmarks and the demo: the envtest control plane (etcd and kube-apiserver)
// plus kube-scheduler, kube-controller-manager and kwok, which plays the
// kubelet of as many fake nodes as a caller adds. Every binary comes from
// bin/ (see test/tools); nothing is downloaded.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options says what to run. The zero value is a cluster with the garbage
// collector and namespace controllers, a scheduler and kwok.
type Options struct {
	// Dir holds logs, kubeconfigs and certificates. Empty means a new
	// temporary folder, kept after Stop so logs can be read.
	Dir string
	// BinDir holds etcd, kube-apiserver, ... Empty means $KUBEBUILDER_ASSETS,
	// else bin/ at the root of this repository.
	BinDir string
	// CRDDirs are installed before Start returns.
	CRDDirs []string
	// Audit turns on API server audit logging of every write at level
	// Metadata, so writes can be counted per user (see CountWrites).
	Audit bool
	// Controllers run in kube-controller-manager. Empty means the garbage
	// collector and namespace controllers. Never node-lifecycle: kwok sends
	// no heartbeats here, so it would mark every node NotReady.
	Controllers []string
	// ControllerManagerArgs are appended to kube-controller-manager's flags
	// (for example --kube-api-qps).
	ControllerManagerArgs []string
	// NoScheduler leaves kube-scheduler out; pods then stay unbound.
	NoScheduler bool
	// ControlPlaneOnly runs etcd and kube-apiserver alone (no scheduler,
	// controller-manager or kwok): envtest's setup, with this package's
	// clean-up guarantees.
	ControlPlaneOnly bool
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
	// OwnSignals: the caller handles SIGINT and SIGTERM itself and calls
	// Stop. Otherwise the cluster stops itself and exits the program on them.
	OwnSignals bool
}

// DefaultControllers are the kube-controller-manager controllers a cluster
// runs unless told otherwise.
var DefaultControllers = []string{"garbage-collector-controller", "namespace-controller"}

// User names of the components, one client certificate each, so the audit
// log tells their writes apart. All of them are in system:masters: the
// controller-manager runs without service-account credentials, and the
// point of this cluster is the components, not their RBAC.
const (
	UserAdmin             = "nodeagentset:admin"
	UserScheduler         = "system:kube-scheduler"
	UserControllerManager = "system:kube-controller-manager"
	UserKwok              = "nodeagentset:kwok"
)

// Cluster is a running local cluster. Its methods are safe to call from
// several goroutines.
type Cluster struct {
	// Dir holds the logs (one file per component under logs/) and kubeconfigs.
	Dir string
	// Config is an admin client config with no client-side rate limit.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string
	// Client is an admin clientset on Config.
	Client kubernetes.Interface

	opts     Options
	bin      string
	env      *envtest.Environment
	watchdog *watchdog

	mu    sync.Mutex
	procs map[string]*process
	// Process groups of etcd and kube-apiserver, which envtest started.
	controlPlane []int
	stopped      bool
	stopOnce     sync.Once
	stopErr      error
}

// Start brings up the cluster and returns once the API server serves and the
// other components are running. On error everything started is stopped.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	c = &Cluster{opts: opts, procs: map[string]*process{}}
	if c.bin, err = binDir(opts.BinDir); err != nil {
		return nil, err
	}
	if c.Dir, err = prepareDir(opts.Dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
			err = fmt.Errorf("%w (logs in %s)", err, c.logDir())
		}
	}()
	if c.watchdog, err = startWatchdog(c.Dir); err != nil {
		return c, err
	}
	if !opts.OwnSignals {
		register(c)
	}
	begin := time.Now()
	if err = c.startControlPlane(); err != nil {
		return c, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	c.logf("control plane up in %v (API server %s)", time.Since(begin).Round(time.Millisecond), c.Config.Host)
	if opts.ControlPlaneOnly {
		return c, nil
	}
	if !opts.NoScheduler {
		if err = c.startScheduler(); err != nil {
			return c, err
		}
	}
	if err = c.startControllerManager(); err != nil {
		return c, err
	}
	if err = c.startKwok(); err != nil {
		return c, err
	}
	// A crash at start-up (a bad flag, a port in use) shows within a moment.
	select {
	case <-ctx.Done():
		return c, ctx.Err()
	case <-time.After(500 * time.Millisecond):
	}
	if err = c.Healthy(); err != nil {
		return c, err
	}
	c.logf("cluster ready in %v; logs in %s", time.Since(begin).Round(time.Millisecond), c.logDir())
	return c, nil
}

func (c *Cluster) startControlPlane() error {
	logs := c.logDir()
	etcdLog, err := os.Create(filepath.Join(logs, "etcd.log"))
	if err != nil {
		return err
	}
	apiLog, err := os.Create(filepath.Join(logs, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	api := &envtest.APIServer{Out: apiLog, Err: apiLog, CertDir: filepath.Join(c.Dir, "pki")}
	if err := os.MkdirAll(api.CertDir, 0o700); err != nil {
		return err
	}
	args := api.Configure()
	// Without the node-lifecycle controller nothing lifts the not-ready taint
	// that TaintNodesByCondition puts on every new node. envtest already turns
	// ServiceAccount off (there is no token controller), so keep that too.
	args.Set("disable-admission-plugins", "ServiceAccount", "TaintNodesByCondition")
	args.Set("endpoint-reconciler-type", "none")
	if c.opts.Audit {
		policy := filepath.Join(c.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
			return err
		}
		args.Set("audit-policy-file", policy)
		args.Set("audit-log-path", c.AuditLogPath())
		args.Set("audit-log-format", "json")
		args.Set("audit-log-maxsize", "0")
	}
	c.env = &envtest.Environment{
		BinaryAssetsDirectory: c.bin,
		CRDDirectoryPaths:     c.opts.CRDDirs,
		ErrorIfCRDPathMissing: len(c.opts.CRDDirs) > 0,
		ControlPlane: envtest.ControlPlane{
			APIServer: api,
			Etcd:      &envtest.Etcd{Out: etcdLog, Err: etcdLog},
		},
	}
	_, startErr := c.env.Start()
	// Tracked even when Start failed (say, a CRD the API server refused):
	// etcd and kube-apiserver may be up, and Stop must find them.
	groups, err := childGroups("etcd", "kube-apiserver")
	if err != nil {
		return err
	}
	if err := c.watchdog.track(groups...); err != nil {
		return err
	}
	c.controlPlane = groups
	if startErr != nil {
		return startErr
	}
	if c.Config, c.Kubeconfig, err = c.AddUser(UserAdmin, "system:masters"); err != nil {
		return err
	}
	c.Client, err = kubernetes.NewForConfig(c.Config)
	return err
}

// AddUser provisions a client certificate for name in groups and returns a
// rest config without a client-side rate limit plus a kubeconfig file for it.
func (c *Cluster) AddUser(name string, groups ...string) (*rest.Config, string, error) {
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, "", fmt.Errorf("adding user %q: %w", name, err)
	}
	kubeconfig, err := u.KubeConfig()
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(c.Dir, "kubeconfigs", safeName(name)+".kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return nil, "", err
	}
	cfg := rest.CopyConfig(u.Config())
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	return cfg, path, nil
}

// Healthy returns an error naming every component that has exited.
func (c *Cluster) Healthy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for name, p := range c.procs {
		if done, err := p.exited(); done {
			errs = append(errs, fmt.Errorf("%s exited (%w); see %s", name, err, c.LogPath(name)))
		}
	}
	return errors.Join(errs...)
}

// Pids lists the process ids of every process the cluster started.
func (c *Cluster) Pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := append([]int(nil), c.controlPlane...)
	for _, p := range c.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// LogPath is where component name writes its log.
func (c *Cluster) LogPath(name string) string { return filepath.Join(c.logDir(), name+".log") }

func (c *Cluster) logDir() string { return filepath.Join(c.Dir, "logs") }

// Stop stops every process the cluster started, kwok first and etcd last.
// It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopped = true
		procs := c.procs
		c.mu.Unlock()
		var errs []error
		for _, name := range []string{"kwok", "kube-controller-manager", "kube-scheduler"} {
			if p := procs[name]; p != nil {
				errs = append(errs, p.stop(5*time.Second))
			}
		}
		for name, p := range procs {
			if name != "kwok" && name != "kube-controller-manager" && name != "kube-scheduler" {
				errs = append(errs, p.stop(5*time.Second))
			}
		}
		if c.env != nil {
			errs = append(errs, c.env.Stop())
		}
		// Whatever envtest did not stop (it may not know a process it
		// failed to start cleanly) goes now.
		for _, g := range c.controlPlane {
			_ = syscall.Kill(-g, syscall.SIGKILL)
		}
		if c.watchdog != nil {
			c.watchdog.stop()
		}
		unregister(c)
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

func (c *Cluster) logf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf(format, args...)
	}
}
