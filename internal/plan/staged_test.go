package plan

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// stagedWorld is a small fake cluster the planner drives: created agents
// of a good revision are Ready at once, agents of a bad one crash-loop;
// deletes take effect at once. status.rollout and currentRevision are fed
// back as the controller's status write would.
type stagedWorld struct {
	t       *testing.T
	s       Snapshot
	bad     map[string]bool // revision hashes that crash-loop
	seq     int
	phases  []string
	maxDown int
}

func newStagedWorld(t *testing.T, ru nasv1alpha1.RollingUpdate) *stagedWorld {
	w := &stagedWorld{t: t, bad: map[string]bool{}}
	var nodes []*corev1.Node
	var pods []*corev1.Pod
	for _, zone := range []string{"a", "b", "c"} {
		for i := 1; i <= 3; i++ {
			n := mkNode(fmt.Sprintf("n-%s%d", zone, i), true)
			n.Labels["zone"] = zone
			nodes = append(nodes, n)
			pods = append(pods, mkPod("old-"+n.Name, n.Name, time.Hour, readyFor(time.Hour)))
		}
	}
	w.s = rolloutSnapshot(nodes, pods, ru, 0)
	w.s.Set.Status.CurrentRevision = "agent-h1"
	return w
}

// step computes one plan, checks the stage invariants and applies it.
func (w *stagedWorld) step() Plan {
	w.t.Helper()
	p := Compute(w.s)
	r := p.Stage.Status
	if r == nil {
		w.t.Fatal("a staged set got no status.rollout")
	}
	if ph := string(r.Phase) + "/" + r.Wave; len(w.phases) == 0 || w.phases[len(w.phases)-1] != ph {
		w.phases = append(w.phases, ph)
	}
	for _, c := range p.Creates {
		w.seq++
		pod := mkPod(fmt.Sprintf("new%d-%s", w.seq, c.Node), c.Node, 0, readyFor(0))
		pod.CreationTimestamp = metav1.NewTime(w.s.Now)
		hash := c.Revision
		if hash == "" {
			hash = w.s.UpdateHash
		}
		pod.Labels[nasv1alpha1.LabelRevisionHash] = hash
		if w.bad[hash] {
			pod.Status.Conditions = nil
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", RestartCount: 9,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
		}
		w.s.Pods = append(w.s.Pods, pod)
	}
	for _, d := range p.Deletes {
		w.s.Pods = slices.DeleteFunc(w.s.Pods, func(q *corev1.Pod) bool { return q == d.Pod })
	}
	w.checkStage(p)
	w.s.Set.Status.Rollout = r
	if r.Phase == nasv1alpha1.PhaseComplete && len(w.on(w.s.UpdateHash)) == len(w.s.Nodes) {
		w.s.Set.Status.CurrentRevision = "agent-" + w.s.UpdateHash
	}
	w.s.Now = w.s.Now.Add(time.Minute)
	return p
}

// on lists the nodes running an agent of hash, sorted.
func (w *stagedWorld) on(hash string) []string {
	var out []string
	for _, p := range w.s.Pods {
		if podtemplate.Hash(p) == hash && !slices.Contains(out, podtemplate.NodeOf(p)) {
			out = append(out, podtemplate.NodeOf(p))
		}
	}
	slices.Sort(out)
	return out
}

// checkStage: after the plan, no node outside the stage runs the update
// revision, and at most maxUnavailable nodes lack a Ready agent.
func (w *stagedWorld) checkStage(p Plan) {
	w.t.Helper()
	r := p.Stage.Status
	allowed := map[string]bool{}
	for _, n := range r.CanaryNodes {
		allowed[n] = true
	}
	if r.Phase == nasv1alpha1.PhaseWaves || r.Phase == nasv1alpha1.PhaseSoaking && r.Wave != "" || r.Phase == nasv1alpha1.PhaseComplete {
		for _, n := range w.s.Nodes {
			if z := n.Labels["zone"]; r.Phase == nasv1alpha1.PhaseComplete || z <= r.Wave || r.Wave == "" {
				allowed[n.Name] = true
			}
		}
	}
	for _, n := range w.on(w.s.UpdateHash) {
		if !allowed[n] && !slices.ContainsFunc(w.s.Nodes, func(x *corev1.Node) bool { return x.Name == n && x.Labels["joined"] == "yes" }) {
			w.t.Fatalf("phase %s wave %q: node %s runs the update revision outside the stage (canary %v); phases %v", r.Phase, r.Wave, n, r.CanaryNodes, w.phases)
		}
	}
	down := 0
	for _, n := range w.s.Nodes {
		if !slices.ContainsFunc(w.s.Pods, func(q *corev1.Pod) bool {
			return podtemplate.NodeOf(q) == n.Name && PodAvailable(q, 0, w.s.Now)
		}) {
			down++
		}
	}
	w.maxDown = max(w.maxDown, down)
}

func (w *stagedWorld) run(steps int, until func(Plan) bool) Plan {
	w.t.Helper()
	for range steps {
		if p := w.step(); until(p) {
			return p
		}
	}
	w.t.Fatalf("not reached in %d steps; phases %v", steps, w.phases)
	return Plan{}
}

func phaseIs(ph nasv1alpha1.RolloutPhase) func(Plan) bool {
	return func(p Plan) bool { return p.Stage.Status.Phase == ph }
}

func stagedUpdate() nasv1alpha1.RollingUpdate {
	return nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(2),
		Canary: &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(3)), SpreadBy: "zone", Soak: "3m", Promotion: nasv1alpha1.PromotionManual},
		Waves:  &nasv1alpha1.Waves{By: "zone", Soak: "2m"},
		Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](3), MaxUnavailableTime: ptr.To(nasv1alpha1.Duration("5m"))}}
}

func TestCanarySoakPromotionThenZoneWaves(t *testing.T) {
	w := newStagedWorld(t, stagedUpdate())
	p := w.run(20, phaseIs(nasv1alpha1.PhaseAwaitingPromotion))
	if got, want := p.Stage.Status.CanaryNodes, []string{"n-a1", "n-b1", "n-c1"}; !slices.Equal(got, want) {
		t.Fatalf("canary %v, want one per zone %v", got, want)
	}
	if got := w.on("h2"); !slices.Equal(got, []string{"n-a1", "n-b1", "n-c1"}) {
		t.Fatalf("updated before promotion: %v", got)
	}
	if st := node(p, "n-a2"); st.Held != "waiting: promotion (kubectl nodeagentset rollout promote)" {
		t.Errorf("n-a2 held %q", st.Held)
	}
	// Still waiting however long it takes; a promote for another revision
	// does nothing.
	w.s.Set.Annotations = map[string]string{nasv1alpha1.AnnotationPromote: "agent-h0"}
	for range 5 {
		if p := w.step(); p.Stage.Status.Phase != nasv1alpha1.PhaseAwaitingPromotion {
			t.Fatalf("went on to %s without a promote for this revision", p.Stage.Status.Phase)
		}
	}
	w.s.Set.Annotations[nasv1alpha1.AnnotationPromote] = "agent-h2"
	w.run(40, phaseIs(nasv1alpha1.PhaseComplete))
	want := []string{"Canary/", "Soaking/", "AwaitingPromotion/", "Waves/a", "Soaking/a", "Waves/b", "Soaking/b", "Waves/c", "Complete/"}
	if !slices.Equal(w.phases, want) {
		t.Errorf("phases %v, want %v", w.phases, want)
	}
	if w.maxDown > 2 {
		t.Errorf("%d nodes without an available agent at once; maxUnavailable is 2", w.maxDown)
	}
}

func TestCanarySoakWaitsAndSaysHowLong(t *testing.T) {
	w := newStagedWorld(t, stagedUpdate())
	p := w.run(20, phaseIs(nasv1alpha1.PhaseSoaking))
	if st := node(p, "n-b3"); st.Held != "waiting: canary soak 3m0s left" {
		t.Errorf("n-b3 held %q", st.Held)
	}
	if p.RequeueAfter != 3*time.Minute {
		t.Errorf("requeue after %v, want the soak's end in 3m", p.RequeueAfter)
	}
}

func TestCrashLoopingCanaryPausesAndAbortPutsItBack(t *testing.T) {
	w := newStagedWorld(t, stagedUpdate())
	w.bad["h2"] = true
	p := w.run(20, phaseIs(nasv1alpha1.PhaseFailed))
	f := p.Stage.Status.Failure
	if f == nil || f.Reason != "CrashLoopBackOff" || f.Node != "n-a1" || p.Stage.NewFailure == nil {
		t.Fatalf("failure %+v, want CrashLoopBackOff on n-a1", f)
	}
	for range 5 {
		w.step()
	}
	if got := w.on("h2"); len(got) > 3 {
		t.Fatalf("nodes beyond the canary updated after the failure: %v", got)
	}
	// A node that joins gets the current revision.
	joined := mkNode("n-d1", true)
	joined.Labels["joined"] = "yes"
	w.s.Nodes = append(w.s.Nodes, joined)
	p = w.step()
	if len(p.Creates) != 1 || p.Creates[0].Node != "n-d1" || p.Creates[0].Revision != "h1" {
		t.Fatalf("creates %+v, want one of the current revision h1 on n-d1", p.Creates)
	}
	// Abort: the canary goes back to the current revision, under the budget.
	w.s.Set.Annotations = map[string]string{nasv1alpha1.AnnotationAbort: "agent-h2"}
	w.run(20, func(Plan) bool { return len(w.on("h2")) == 0 && len(w.on("h1")) == len(w.s.Nodes) })
	if ph := w.s.Set.Status.Rollout.Phase; ph != nasv1alpha1.PhaseAborted {
		t.Errorf("phase %s after abort, want Aborted", ph)
	}
	// Retry (the plugin also drops the abort) with a fixed template.
	since := w.s.Set.Status.Rollout.PhaseSince.Time
	w.s.Set.Annotations = map[string]string{nasv1alpha1.AnnotationRetry: "agent-h2@" + since.UTC().Format(time.RFC3339)}
	w.bad["h2"] = false
	p = w.step()
	if p.Stage.Status.Failure != nil || p.Stage.Status.Phase != nasv1alpha1.PhaseCanary {
		t.Fatalf("after retry: %+v, want the canary again without the failure", p.Stage.Status)
	}
	w.s.Set.Annotations[nasv1alpha1.AnnotationPromote] = "agent-h2"
	w.run(60, phaseIs(nasv1alpha1.PhaseComplete))
	if got := w.on("h1"); len(got) != 0 {
		t.Errorf("nodes still on the current revision after completion: %v", got)
	}
}

func TestFailureActionAbortRollsTheCanaryBack(t *testing.T) {
	ru := stagedUpdate()
	ru.Health.FailureAction = nasv1alpha1.FailureAbort
	w := newStagedWorld(t, ru)
	w.bad["h2"] = true
	w.run(20, phaseIs(nasv1alpha1.PhaseAborted))
	w.run(20, func(Plan) bool { return len(w.on("h2")) == 0 })
	if got := w.on("h1"); len(got) != len(w.s.Nodes) {
		t.Errorf("on the current revision after abort: %v, want every node", got)
	}
	if w.maxDown > 2 {
		t.Errorf("%d nodes down at once during the abort; maxUnavailable is 2", w.maxDown)
	}
}

func TestCanaryChoiceIsStableAndPrefersHealthyNodes(t *testing.T) {
	w := newStagedWorld(t, stagedUpdate())
	w.s.Nodes[0] = dead(w.s.Nodes[0], time.Hour) // n-a1
	p := w.step()
	if got := p.Stage.Status.CanaryNodes; !slices.Equal(got, []string{"n-a2", "n-b1", "n-c1"}) {
		t.Fatalf("canary %v, want the healthy n-a2 in place of the dead n-a1", got)
	}
	// Stored: a node that joins (and sorts first) does not move it.
	w.s.Nodes = append(w.s.Nodes, func() *corev1.Node {
		n := mkNode("n-a0", true)
		n.Labels["zone"], n.Labels["joined"] = "a", "yes"
		return n
	}())
	if got := w.step().Stage.Status.CanaryNodes; !slices.Equal(got, []string{"n-a2", "n-b1", "n-c1"}) {
		t.Errorf("canary moved to %v", got)
	}
}
