package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	kstatusv1 "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// stageOrder is the order a staged rollout must keep, checked at every pod
// event: before the promote only canary nodes run the update revision; a
// node of zone b only once every non-canary node of zone a runs it, Ready.
type stageOrder struct {
	zones map[string]string
	mu    sync.Mutex
	// hash is the update revision being checked, "" while not yet known.
	hash     string
	canary   map[string]bool
	promoted atomic.Bool
	broken   []string
}

// follow starts checking the rollout of hash with its canary nodes; nodes
// updated before are judged at once, from the pods they run.
func (o *stageOrder) follow(ch *checker, hash string, canary []string) {
	o.mu.Lock()
	o.hash, o.canary = hash, map[string]bool{}
	for _, n := range canary {
		o.canary[n] = true
	}
	o.mu.Unlock()
	o.promoted.Store(false)
	ch.observe()
}

func (o *stageOrder) check(live map[string][]*corev1.Pod) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hash == "" {
		return
	}
	on := map[string]bool{} // node -> Ready, for nodes on the update revision
	for n, pods := range live {
		for _, p := range pods {
			if podtemplate.Hash(p) == o.hash {
				on[n] = podReady(p)
			}
		}
	}
	for n := range on {
		if o.canary[n] {
			continue
		}
		if !o.promoted.Load() {
			o.fail(fmt.Sprintf("node %s updated before the promotion", n))
		}
		for other, z := range o.zones {
			if z < o.zones[n] && !o.canary[other] && !on[other] {
				o.fail(fmt.Sprintf("node %s (zone %s) updated while %s (zone %s) was not done", n, o.zones[n], other, z))
			}
		}
	}
}

func (o *stageOrder) fail(msg string) {
	if len(o.broken) < 5 {
		o.broken = append(o.broken, msg)
	}
}

// TestStagedRollout: 30 nodes in three zones. A canary of one node per
// zone, a 5s soak, manual promotion with the plugin, then the zones in
// order, the order checked at every pod event; then a crash-looping
// release (kwok's pod-crash-loop stage) stopped after the canary with
// Stalled/HealthCheckFailed (kstatus Failed, kubectl wait, the plugin's
// rollout status failing), aborted with the plugin back to the current
// revision; then a fixed template rolls out to the end.
func TestStagedRollout(t *testing.T) {
	e, zones := zonedCluster(t)
	c, n := e.c, len(e.nodes)
	start := time.Now()
	// The plugin helper works in namespace "plugin".
	set := e.deploy(t, "plugin", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(3)),
			Canary: &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(3)), SpreadBy: corev1.LabelTopologyZone, Soak: "5s",
				Promotion: nasv1alpha1.PromotionManual},
			Waves:  &nasv1alpha1.Waves{By: corev1.LabelTopologyZone},
			Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](2)}}
	})
	t.Logf("deployed on %d nodes in %v", n, time.Since(start).Round(time.Millisecond))
	ch := watchPods(t, c.Client, set, e.nodes)
	order := &stageOrder{zones: zones}
	ch.setEach(order.check)

	// 1. Canary, soak, promotion, waves.
	start = time.Now()
	e.update(t, set, image("registry.example/agent:2"))
	canary := e.canaryOf(t, ch, set)
	order.follow(ch, e.updateHash(t, set), canary)
	seen := map[string]bool{}
	for _, cn := range canary {
		seen[zones[cn]] = true
	}
	if len(canary) != 3 || len(seen) != 3 {
		t.Fatalf("canary %v, want one node per zone", canary)
	}
	e.waitFor(t, ch, "awaiting promotion", e.phase(t, set, nasv1alpha1.PhaseAwaitingPromotion))
	t.Logf("canary updated and soaked in %v", time.Since(start).Round(time.Millisecond))
	if st := kstatus(t, e.get(t, set)); st != kstatusv1.InProgressStatus {
		t.Errorf("kstatus %s while awaiting promotion, want InProgress", st)
	}
	mustPlugin(t, c, "awaiting promotion", "rollout", "status", "agent", "--watch=false")
	order.promoted.Store(true)
	mustPlugin(t, c, "", "rollout", "promote", "agent")
	start = time.Now()
	e.waitFor(t, ch, "the waves complete", e.complete(t, set))
	t.Logf("promotion to complete (three zone waves) in %v", time.Since(start).Round(time.Millisecond))
	if r := e.get(t, set).Status.Rollout; r.Phase != nasv1alpha1.PhaseComplete {
		t.Errorf("phase %s once complete", r.Phase)
	}

	// 2. A crash-looping release stops after the canary.
	current := e.updateHash(t, set)
	order.follow(ch, "", nil)
	start = time.Now()
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:3-broken"
		s.Spec.Template.Annotations = map[string]string{"kwok.nodeagentset.io/crash-loop": "true"}
	})
	canary = e.canaryOf(t, ch, set)
	order.follow(ch, e.updateHash(t, set), canary)
	e.waitFor(t, ch, "Stalled HealthCheckFailed", func() (bool, string) {
		got := e.get(t, set)
		c := meta.FindStatusCondition(got.Status.Conditions, nasv1alpha1.ConditionStalled)
		return c != nil && c.Status == "True" && c.Reason == "HealthCheckFailed", fmt.Sprintf("stalled %+v rollout %+v", c, got.Status.Rollout)
	})
	got := e.get(t, set)
	t.Logf("crash loop caught in %v: %+v", time.Since(start).Round(time.Millisecond), got.Status.Rollout.Failure)
	if st := kstatus(t, got); st != kstatusv1.FailedStatus {
		t.Errorf("kstatus %s after a failed health check, want Failed", st)
	}
	if f := got.Status.Rollout.Failure; f == nil || !slices.Contains([]string{"CrashLoopBackOff", "RestartCount"}, f.Reason) || !slices.Contains(canary, f.Node) {
		t.Errorf("failure %+v, want a crash loop on a canary node %v", f, got.Status.Rollout.CanaryNodes)
	}
	mustRun(t, c, nil, "kubectl", "wait", "-n", "plugin", "nodeagentset/agent", "--for=condition=Stalled", "--timeout=60s")
	if out, code := plugin(t, c, "rollout", "status", "agent", "--watch=false"); code == 0 || !strings.Contains(out, "HealthCheckFailed") {
		t.Errorf("rollout status exit %d, output:\n%s\nwant a failure naming HealthCheckFailed", code, out)
	}
	mustPlugin(t, c, "", "rollout", "abort", "agent")
	start = time.Now()
	e.waitFor(t, ch, "every node back on the current revision", onRevision(ch, current, all, e.nodes))
	t.Logf("aborted: every node back on the current revision in %v", time.Since(start).Round(time.Millisecond))
	if r := e.get(t, set).Status.Rollout; r.Phase != nasv1alpha1.PhaseAborted {
		t.Errorf("phase %s after the abort, want Aborted", r.Phase)
	}

	// 3. A fixed template rolls out to the end.
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:4"
		s.Spec.Template.Annotations = nil
	})
	order.follow(ch, "", nil)
	canary = e.canaryOf(t, ch, set)
	fixed := e.updateHash(t, set)
	order.follow(ch, fixed, canary)
	e.waitFor(t, ch, "awaiting promotion of the fixed template", e.phase(t, set, nasv1alpha1.PhaseAwaitingPromotion))
	order.promoted.Store(true)
	mustPlugin(t, c, "", "rollout", "promote", "agent")
	e.waitFor(t, ch, "the fixed template complete", e.complete(t, set))
	e.waitFor(t, ch, "every node on the fixed template", onRevision(ch, fixed, all, e.nodes))

	order.mu.Lock()
	defer order.mu.Unlock()
	if len(order.broken) > 0 {
		t.Errorf("the stage order broke: %v", order.broken)
	}
}

// canaryOf waits for the canary of the set's update revision.
func (e *rolloutEnv) canaryOf(t *testing.T, ch *checker, set *nasv1alpha1.NodeAgentSet) []string {
	t.Helper()
	var canary []string
	e.waitFor(t, ch, "the canary chosen", func() (bool, string) {
		got := e.get(t, set)
		r := got.Status.Rollout
		if r == nil || r.Revision != got.Status.UpdateRevision || got.Status.ObservedGeneration != got.Generation || len(r.CanaryNodes) == 0 {
			return false, fmt.Sprintf("%+v", r)
		}
		canary = r.CanaryNodes
		return true, ""
	})
	return canary
}

func (e *rolloutEnv) phase(t *testing.T, set *nasv1alpha1.NodeAgentSet, want nasv1alpha1.RolloutPhase) func() (bool, string) {
	return func() (bool, string) {
		r := e.get(t, set).Status.Rollout
		return r != nil && r.Phase == want, fmt.Sprintf("%+v", r)
	}
}

// zonedCluster starts a cluster of NAS_E2E_STAGED_NODES (30) nodes labelled
// for the agent, in zones a, b and c by turn, and the manager; it returns
// the zone of every node.
func zonedCluster(t *testing.T) (*rolloutEnv, map[string]string) {
	t.Helper()
	ctx := t.Context()
	c := startCluster(t, cluster.Options{})
	specs := cluster.Nodes("node", envInt("NAS_E2E_STAGED_NODES", 30))
	zones := map[string]string{}
	for i := range specs {
		z := string(rune('a' + i%3))
		specs[i].Labels = map[string]string{"agent": "yes", corev1.LabelTopologyZone: z}
		zones[specs[i].Name] = z
	}
	if err := c.AddNodes(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(ctx, 2*time.Minute, cluster.Names(specs)...); err != nil {
		t.Fatal(err)
	}
	return &rolloutEnv{c: c, k: startManager(t, c), nodes: cluster.Names(specs)}, zones
}
