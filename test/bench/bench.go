// Package bench compares NodeAgentSet's manager with the upstream DaemonSet
// controller on one local cluster (test/cluster): the same workload, rounds
// alternating between the two, figures from a pod watch, the API server's
// audit log and /proc. `make bench` runs it through test/cmd/bench; the
// package test runs a small version of it in make test.
package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// Config says what to run.
type Config struct {
	// Sizes are the node counts, smallest first; the cluster grows from
	// one to the next.
	Sizes []int
	// Rounds per contender, size and mode.
	Rounds int
	// Joins is how many nodes join after each rolling update, one every
	// JoinInterval.
	Joins        int
	JoinInterval time.Duration
	// UnrelatedPods are created at the largest size for the busy-cluster
	// rounds (none: no busy rounds).
	UnrelatedPods int
	// EqualQPS and EqualBurst are both contenders' client limits in the
	// "equal" mode.
	EqualQPS   float64
	EqualBurst int
	// OnlyModes, when set, runs only the modes of these names.
	OnlyModes []string
	// ManagerBinary is the built manager (cmd/manager).
	ManagerBinary string
	// ManagerExtraArgs are added to the manager's flags in every mode (say,
	// --pprof-bind-address to profile it).
	ManagerExtraArgs []string
	// CRDDir holds the NodeAgentSet CRD.
	CRDDir string
	// Dir keeps the cluster's logs (empty: a temporary folder).
	Dir string
	// PhaseTimeout bounds each wait.
	PhaseTimeout time.Duration
	Logf         func(format string, args ...any)
}

// Mode is a choice of client limits for both contenders.
type Mode struct {
	Name  string
	Title string
	// DaemonSetArgs and ManagerArgs are added to each contender's flags.
	DaemonSetArgs, ManagerArgs []string
}

// Modes are equal limits first, then each contender at its shipped defaults
// (no flag at all).
func (cfg Config) Modes() []Mode {
	limits := []string{fmt.Sprintf("--kube-api-qps=%g", cfg.EqualQPS), fmt.Sprintf("--kube-api-burst=%d", cfg.EqualBurst)}
	return []Mode{
		{Name: "equal", Title: fmt.Sprintf("equal client limits (both %g QPS, burst %d)", cfg.EqualQPS, cfg.EqualBurst),
			DaemonSetArgs: limits, ManagerArgs: limits},
		{Name: "shipped", Title: "shipped defaults (DaemonSet controller 20 QPS, burst 30; NodeAgentSet 100 QPS, burst 200)"},
	}
}

// Results are every sample of a run.
type Results struct {
	Config   Config        `json:"-"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	CPUs     int           `json:"cpus"`
	Samples  []Sample      `json:"samples"`
}

// Run starts a cluster, runs every round and stops the cluster. Samples
// measured before an error are returned with it.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	res := &Results{Config: cfg, Started: time.Now(), CPUs: runtime.NumCPU()}
	defer func() { res.Duration = time.Since(res.Started) }()
	c, err := cluster.Start(ctx, cluster.Options{
		Dir: cfg.Dir, CRDDirs: []string{cfg.CRDDir}, Audit: true, Logf: cfg.Logf, OwnSignals: true,
		// The garbage collector runs for both contenders alike (it deletes
		// nothing during a round); it is not measured, so it gets a client
		// limit that never holds up a clean-up.
		Controllers:           []string{"garbage-collector-controller"},
		ControllerManagerArgs: []string{"--kube-api-qps=1000", "--kube-api-burst=2000"},
	})
	if err != nil {
		return res, err
	}
	defer c.Stop() //nolint:errcheck // the cluster's processes are gone either way
	r, err := newRunner(ctx, cfg, c)
	if err != nil {
		return res, err
	}
	var nodes []string
	for _, size := range cfg.Sizes {
		if nodes, err = r.grow(ctx, nodes, size); err != nil {
			return res, err
		}
		for _, m := range cfg.Modes() {
			if len(cfg.OnlyModes) > 0 && !slices.Contains(cfg.OnlyModes, m.Name) {
				continue
			}
			who := []Contender{DaemonSet, NodeAgentSet}
			if m.Name == "equal" {
				who = append(who, Floor) // the floor does not depend on limits
			}
			for round := 1; round <= cfg.Rounds; round++ {
				for _, w := range who {
					s, err := r.round(ctx, w, m, nodes, round, false)
					if err != nil {
						return res, fmt.Errorf("%d nodes, %s, %s round %d: %w", size, m.Name, w, round, err)
					}
					res.Samples = append(res.Samples, s)
					r.logf("%s", s.summary())
				}
			}
		}
	}
	if cfg.UnrelatedPods == 0 || (len(cfg.OnlyModes) > 0 && !slices.Contains(cfg.OnlyModes, "shipped")) {
		return res, nil
	}
	if err := r.addUnrelatedPods(ctx, nodes); err != nil {
		return res, err
	}
	shipped := cfg.Modes()[1]
	for _, w := range []Contender{NodeAgentSet, DaemonSet} {
		s, err := r.round(ctx, w, shipped, nodes, 1, true)
		if err != nil {
			return res, fmt.Errorf("busy cluster, %s: %w", w, err)
		}
		res.Samples = append(res.Samples, s)
		r.logf("%s", s.summary())
	}
	return res, nil
}

func newRunner(ctx context.Context, cfg Config, c *cluster.Cluster) (*runner, error) {
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := nasv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	k, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	floorConfig, _, err := c.AddUser(userFloor, "system:masters")
	if err != nil {
		return nil, err
	}
	floor, err := kubernetes.NewForConfig(floorConfig)
	if err != nil {
		return nil, err
	}
	_, kubeconfig, err := c.AddUser(userManager, "system:masters")
	if err != nil {
		return nil, err
	}
	for _, ns := range []string{namespace, unrelatedNamespace} {
		if err := ensureNamespace(ctx, c.Client, ns); err != nil {
			return nil, err
		}
	}
	return &runner{cfg: cfg, c: c, k: k, floor: floor, kubeconfigManager: kubeconfig}, nil
}

// grow adds nodes until there are size, and waits for all to be Ready.
func (r *runner) grow(ctx context.Context, nodes []string, size int) ([]string, error) {
	specs := cluster.Nodes("node", size)[len(nodes):]
	begin := time.Now()
	if err := r.c.AddNodes(ctx, specs...); err != nil {
		return nodes, err
	}
	nodes = cluster.Names(cluster.Nodes("node", size))
	if err := r.c.WaitNodesReady(ctx, r.cfg.PhaseTimeout, nodes...); err != nil {
		return nodes, err
	}
	r.logf("%d nodes Ready (%d added in %v)", size, len(specs), time.Since(begin).Round(time.Millisecond))
	return nodes, nil
}

// addUnrelatedPods fills the cluster with pods no agent selector matches,
// spread over the nodes, and waits until kwok runs them all.
func (r *runner) addUnrelatedPods(ctx context.Context, nodes []string) error {
	begin := time.Now()
	err := cluster.ForEach(ctx, r.cfg.UnrelatedPods, 32, func(i int) error {
		_, err := r.c.Client.CoreV1().Pods(unrelatedNamespace).Create(ctx, unrelatedPod(i, nodes[i%len(nodes)]), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("creating unrelated pods: %w", err)
	}
	deadline := time.Now().Add(r.cfg.PhaseTimeout * 4)
	for {
		// Served from the API server's watch cache, filtered there: a small
		// answer even with 20,000 pods.
		pending, err := r.c.Client.CoreV1().Pods(unrelatedNamespace).List(ctx, metav1.ListOptions{
			ResourceVersion: "0", FieldSelector: "status.phase!=Running",
		})
		if err == nil && len(pending.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("unrelated pods not all Running after %v", time.Since(begin))
		}
		time.Sleep(2 * time.Second)
	}
	r.logf("%d unrelated pods Running after %v", r.cfg.UnrelatedPods, time.Since(begin).Round(time.Millisecond))
	return nil
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Logf != nil {
		r.cfg.Logf(format, args...)
	}
}
