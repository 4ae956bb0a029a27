package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// Contender is who places the pods in a round.
type Contender string

const (
	// DaemonSet is the upstream controller, alone in a kube-controller-manager.
	DaemonSet Contender = "daemonset"
	// NodeAgentSet is our manager.
	NodeAgentSet Contender = "nodeagentset"
	// Floor is a bare client creating one pinned pod per node, as fast as
	// the API server takes them.
	Floor Contender = "floor"
)

// Users of the contenders' client certificates, which tell their writes
// apart in the audit log.
const (
	userDaemonSet = "bench:daemonset-controller"
	userManager   = "bench:nodeagentset-manager"
	userFloor     = "bench:floor"
)

// process names the contender's process in the cluster.
func (c Contender) process() string {
	if c == DaemonSet {
		return "daemonset-controller"
	}
	return "manager"
}

func (c Contender) user() string {
	switch c {
	case DaemonSet:
		return userDaemonSet
	case NodeAgentSet:
		return userManager
	}
	return userFloor
}

// Sample is what one round measured.
type Sample struct {
	Nodes int       `json:"nodes"`
	Mode  string    `json:"mode"`
	Who   Contender `json:"who"`
	Round int       `json:"round"`
	// Busy rounds ran with the unrelated pods present.
	Busy bool `json:"busy,omitempty"`
	// Create is from creating the workload to every node having a Ready pod.
	Create time.Duration `json:"create"`
	// Update is from changing the template to every node having a Ready pod
	// of the new template and no old pod left.
	Update time.Duration `json:"update,omitempty"`
	// Joins are the latencies from creating a node to its agent being Ready.
	Joins []time.Duration `json:"joins,omitempty"`
	// Writes are the contender's API writes in each phase, by
	// verb/resource[/subresource].
	WritesCreate map[string]int `json:"writesCreate"`
	WritesUpdate map[string]int `json:"writesUpdate,omitempty"`
	CPUCreate    time.Duration  `json:"cpuCreate,omitempty"`
	CPUUpdate    time.Duration  `json:"cpuUpdate,omitempty"`
	// PeakRSS is the contender process's peak resident memory in bytes.
	PeakRSS int64 `json:"peakRSS,omitempty"`
}

// runner runs rounds on one cluster.
type runner struct {
	cfg               Config
	c                 *cluster.Cluster
	k                 client.Client // admin, for NodeAgentSets
	floor             kubernetes.Interface
	kubeconfigManager string
	// auditOffset is how far the audit log has been read.
	auditOffset int64
	joinSeq     int
}

// round runs one contender through create, rolling update and node joins
// on nodes (names), then removes everything it made.
func (r *runner) round(ctx context.Context, who Contender, m Mode, nodes []string, n int, busy bool) (s Sample, err error) {
	s = Sample{Nodes: len(nodes), Mode: m.Name, Who: who, Round: n, Busy: busy}
	tr, err := startTracker(ctx, r.c.Client)
	if err != nil {
		return s, err
	}
	defer tr.stop()
	var pid int
	if who != Floor {
		if pid, err = r.startContender(who, m); err != nil {
			return s, err
		}
		if err := waitIdle(ctx, pid); err != nil {
			return s, err
		}
	}
	defer func() {
		if cleanErr := r.cleanup(ctx, who, tr); cleanErr != nil && err == nil {
			err = cleanErr
		}
	}()
	if _, r.auditOffset, err = r.c.WritesFrom(r.auditOffset); err != nil {
		return s, err
	}
	use := usage{pid: pid}
	if err := use.mark(); err != nil {
		return s, err
	}
	var phases []time.Time // starts of create, update and joins
	begin, took, err := r.phase(ctx, tr, &use, "every node to run a Ready agent",
		func() error { return r.create(ctx, who, nodes) },
		func() bool { return tr.count(agentImage(1)).ready >= len(nodes) })
	phases, s.Create = append(phases, begin), took
	if err != nil {
		return s, err
	}
	if who != Floor {
		begin, took, err = r.phase(ctx, tr, &use, "every node to run a Ready agent of the new template",
			func() error { return r.update(ctx, who) },
			func() bool { a := tr.count(agentImage(2)); return a.ready >= len(nodes) && a.others == 0 })
		phases, s.Update = append(phases, begin), took
		if err != nil {
			return s, err
		}
		phases = append(phases, time.Now())
		if s.Joins, err = r.joins(ctx, tr); err != nil {
			return s, err
		}
		u, err := cluster.ProcessUsage(pid)
		if err != nil {
			return s, err
		}
		s.CPUCreate, s.CPUUpdate, s.PeakRSS = use.spent[0], use.spent[1], u.PeakRSS
	}
	writes, err := r.writesByPhase(who.user(), phases)
	if err != nil {
		return s, err
	}
	s.WritesCreate = writes[0]
	if len(writes) > 1 {
		s.WritesUpdate = writes[1]
	}
	return s, nil
}

// phase runs one timed phase: start changes the workload, done says when
// the wanted state is reached. It returns when the phase began and the time
// to the event that met done, then lets the contender settle.
func (r *runner) phase(ctx context.Context, tr *tracker, use *usage, what string, start func() error, done func() bool) (time.Time, time.Duration, error) {
	begin := time.Now()
	if err := start(); err != nil {
		return begin, 0, err
	}
	end, err := tr.waitFor(ctx, r.cfg.PhaseTimeout, what, done)
	if err != nil {
		return begin, 0, err
	}
	return begin, end.Sub(begin), r.settle(ctx, use)
}

// settle waits for the contender to go idle, so a phase's trailing status
// writes and CPU are its own, then closes the phase's CPU account.
func (r *runner) settle(ctx context.Context, use *usage) error {
	if use.pid == 0 {
		return nil
	}
	if err := waitIdle(ctx, use.pid); err != nil {
		return err
	}
	return use.mark()
}

func (r *runner) startContender(who Contender, m Mode) (int, error) {
	var err error
	switch who {
	case DaemonSet:
		err = r.c.StartControllerManager(who.process(), userDaemonSet, []string{"daemonset-controller"}, m.DaemonSetArgs...)
	case NodeAgentSet:
		args := append([]string{"--kubeconfig=" + r.kubeconfigManager, "--metrics-bind-address=0", "--health-probe-bind-address=0"}, m.ManagerArgs...)
		args = append(args, r.cfg.ManagerExtraArgs...)
		err = r.c.StartProcess(who.process(), r.cfg.ManagerBinary, args...)
	}
	if err != nil {
		return 0, err
	}
	return r.c.Pid(who.process())
}

func (r *runner) create(ctx context.Context, who Contender, nodes []string) error {
	switch who {
	case DaemonSet:
		_, err := r.c.Client.AppsV1().DaemonSets(namespace).Create(ctx, daemonSet(), metav1.CreateOptions{})
		return err
	case NodeAgentSet:
		return r.k.Create(ctx, nodeAgentSet())
	}
	return cluster.ForEach(ctx, len(nodes), floorWorkers, func(i int) error {
		_, err := r.floor.CoreV1().Pods(namespace).Create(ctx, pinnedPod(nodes[i]), metav1.CreateOptions{})
		return err
	})
}

// update changes the agent's image, the same JSON merge patch for both.
func (r *runner) update(ctx context.Context, who Contender) error {
	patch := fmt.Appendf(nil, `{"spec":{"template":{"spec":{"containers":[{"name":"agent","image":%q}]}}}}`, agentImage(2))
	if who == DaemonSet {
		_, err := r.c.Client.AppsV1().DaemonSets(namespace).Patch(ctx, setName, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	}
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: setName, Namespace: namespace}}
	return r.k.Patch(ctx, set, client.RawPatch(types.MergePatchType, patch))
}

// joins adds Config.Joins nodes, one every Config.JoinInterval, and returns
// for each the time from its creation to its agent being Ready.
func (r *runner) joins(ctx context.Context, tr *tracker) ([]time.Duration, error) {
	r.joinSeq++
	specs := cluster.Nodes(fmt.Sprintf("join-%03d", r.joinSeq), r.cfg.Joins)
	created := make([]time.Time, len(specs))
	tick := time.NewTicker(r.cfg.JoinInterval)
	defer tick.Stop()
	for i, spec := range specs {
		if i > 0 {
			<-tick.C
		}
		created[i] = time.Now()
		if err := r.c.AddNodes(ctx, spec); err != nil {
			return nil, err
		}
	}
	_, err := tr.waitFor(ctx, r.cfg.PhaseTimeout, "every joined node to run a Ready agent", func() bool {
		return !slices.ContainsFunc(specs, func(s cluster.NodeSpec) bool { return tr.readyOn(s.Name, agentImage(2)).IsZero() })
	})
	if err != nil {
		return nil, err
	}
	lat := make([]time.Duration, len(specs))
	for i, s := range specs {
		lat[i] = tr.readyOn(s.Name, agentImage(2)).Sub(created[i])
	}
	return lat, nil
}

// writesByPhase counts user's writes in each phase: from the start of one
// phase to the start of the next, the last one to now.
func (r *runner) writesByPhase(user string, phases []time.Time) ([]map[string]int, error) {
	// The audit log lags the response by a moment.
	time.Sleep(time.Second)
	writes, next, err := r.c.WritesFrom(r.auditOffset)
	if err != nil {
		return nil, err
	}
	r.auditOffset = next
	counts := make([]map[string]int, len(phases))
	for i := range counts {
		counts[i] = map[string]int{}
	}
	for _, w := range writes {
		if w.User != user {
			continue
		}
		i := len(phases) - 1
		for i >= 0 && w.At.Before(phases[i]) {
			i--
		}
		if i < 0 {
			continue
		}
		key := w.Verb + "/" + w.Resource
		if w.Subresource != "" {
			key += "/" + w.Subresource
		}
		counts[i][key]++
	}
	return counts, nil
}

// cleanup stops the contender and removes every object the round made, so
// the next round starts from the same cluster.
func (r *runner) cleanup(ctx context.Context, who Contender, tr *tracker) error {
	if who != Floor {
		// Stopped first, so nothing puts back what is deleted below.
		if err := r.c.StopProcess(who.process(), 10*time.Second); err != nil {
			return fmt.Errorf("stopping %s: %w", who.process(), err)
		}
	}
	background := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &background}
	now := metav1.DeleteOptions{GracePeriodSeconds: new(int64)}
	var errs []error
	keep := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	keep(r.c.Client.AppsV1().DaemonSets(namespace).Delete(ctx, setName, del))
	keep(r.k.Delete(ctx, nodeAgentSet(), &client.DeleteOptions{PropagationPolicy: &background}))
	keep(r.c.Client.CoreV1().Pods(namespace).DeleteCollection(ctx, now, metav1.ListOptions{}))
	keep(r.c.Client.AppsV1().ControllerRevisions(namespace).DeleteCollection(ctx, del, metav1.ListOptions{}))
	if r.joinSeq > 0 {
		for _, s := range cluster.Nodes(fmt.Sprintf("join-%03d", r.joinSeq), r.cfg.Joins) {
			keep(r.c.DeleteNode(ctx, s.Name))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleaning up after %s: %v", who, errs)
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		if tr.total() > 0 {
			return false, nil
		}
		_, dsErr := r.c.Client.AppsV1().DaemonSets(namespace).Get(ctx, setName, metav1.GetOptions{})
		nasErr := r.k.Get(ctx, client.ObjectKey{Namespace: namespace, Name: setName}, &nasv1alpha1.NodeAgentSet{})
		return apierrors.IsNotFound(dsErr) && apierrors.IsNotFound(nasErr), nil
	})
}
