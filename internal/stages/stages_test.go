package stages

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/nodehealth"
)

var t0 = time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)

const rev = "agent-h2"

// nodes makes desired in-scope nodes on the old revision from specs
// "name" or "name:zone"; a zone of "-" leaves the label off.
func nodes(specs ...string) []Node {
	out := make([]Node, 0, len(specs))
	for _, s := range specs {
		name, zone, _ := strings.Cut(s, ":")
		n := Node{Name: name, Labels: map[string]string{}, InScope: true, Outdated: true}
		if zone != "" && zone != "-" {
			n.Labels["zone"] = zone
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// updated marks the named nodes as running an available agent of the
// update revision, created at created.
func updated(ns []Node, created time.Time, names ...string) []Node {
	ns = slices.Clone(ns)
	for i := range ns {
		if slices.Contains(names, ns[i].Name) {
			ns[i].Update = agent(ns[i].Name, created)
			ns[i].Available, ns[i].Outdated = true, false
		}
	}
	return ns
}

func agent(node string, created time.Time) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-" + node, CreationTimestamp: metav1.NewTime(created)},
		Spec:       corev1.PodSpec{NodeName: node},
	}
}

func set(ru nasv1alpha1.RollingUpdate, st *nasv1alpha1.RolloutStatus, annotations map[string]string) *nasv1alpha1.NodeAgentSet {
	return &nasv1alpha1.NodeAgentSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Annotations: annotations},
		Spec: nasv1alpha1.NodeAgentSetSpec{UpdateStrategy: nasv1alpha1.UpdateStrategy{
			Type: nasv1alpha1.RollingUpdateStrategy, RollingUpdate: &ru}},
		Status: nasv1alpha1.NodeAgentSetStatus{Rollout: st},
	}
}

func canary(n int32, spreadBy string, soak string, promotion nasv1alpha1.Promotion) *nasv1alpha1.Canary {
	return &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(n)), SpreadBy: nasv1alpha1.LabelKey(spreadBy),
		Soak: nasv1alpha1.Duration(soak), Promotion: promotion}
}

func stored(phase nasv1alpha1.RolloutPhase, wave string, since time.Time, canary ...string) *nasv1alpha1.RolloutStatus {
	return &nasv1alpha1.RolloutStatus{Revision: rev, Phase: phase, Wave: wave, CanaryNodes: canary, PhaseSince: ptr.To(metav1.NewTime(since))}
}

func next(s *nasv1alpha1.NodeAgentSet, ns []Node, now time.Time) Result {
	return Next(Input{Set: s, Revision: rev, Rolling: true, Nodes: ns, Now: now})
}

func TestChooseCanary(t *testing.T) {
	dead := nodehealth.Health{Reason: "NotReady", Since: t0.Add(-time.Hour)}
	for _, tc := range []struct {
		name   string
		canary *nasv1alpha1.Canary
		nodes  []Node
		want   []string
	}{
		{name: "default is one node, the first by name",
			canary: &nasv1alpha1.Canary{}, nodes: nodes("n3", "n1", "n2"), want: []string{"n1"}},
		{name: "round-robin over the sorted zones, by name within a zone",
			canary: canary(3, "zone", "", ""), nodes: nodes("c1:c", "a2:a", "b1:b", "a1:a", "b2:b", "c2:c"),
			want: []string{"a1", "b1", "c1"}},
		{name: "more canaries than zones take a second round",
			canary: canary(5, "zone", "", ""), nodes: nodes("a1:a", "a2:a", "a3:a", "b1:b", "b2:b", "c1:c"),
			want: []string{"a1", "b1", "c1", "a2", "b2"}},
		{name: "a zone that runs out is passed by",
			canary: canary(4, "zone", "", ""), nodes: nodes("a1:a", "a2:a", "a3:a", "b1:b"),
			want: []string{"a1", "b1", "a2", "a3"}},
		{name: "nodes without the spread label are a last value",
			canary: canary(3, "zone", "", ""), nodes: nodes("x1:-", "a1:a", "b1:b", "x2:-"),
			want: []string{"a1", "b1", "x1"}},
		{name: "percent rounds up over the selectable nodes",
			canary: &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromString("10%")), SpreadBy: "zone"},
			nodes:  nodes("a1:a", "a2:a", "a3:a", "a4:a", "b1:b", "b2:b", "b3:b", "b4:b", "c1:c", "c2:c", "c3:c"),
			want:   []string{"a1", "b1"}},
		{name: "zero is at least one",
			canary: &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(0))}, nodes: nodes("n1", "n2"), want: []string{"n1"}},
		{name: "nodes out of scope are never chosen",
			canary: canary(2, "", "", ""), nodes: func() []Node {
				ns := nodes("n1", "n2", "n3")
				ns[0].InScope = false
				return ns
			}(), want: []string{"n2", "n3"}},
		{name: "the canary's nodeSelector limits the choice",
			canary: &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(2)),
				NodeSelector: &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"zone": "b"}}},
			nodes: nodes("a1:a", "b1:b", "b2:b", "b3:b"), want: []string{"b1", "b2"}},
		{name: "healthy nodes first, then unhealthy ones, still spread",
			canary: canary(3, "zone", "", ""), nodes: func() []Node {
				ns := nodes("a1:a", "a2:a", "b1:b", "c1:c")
				ns[0].Health = dead // a1
				ns[3].Health = dead // c1
				return ns
			}(), want: []string{"a2", "b1", "a1"}},
		{name: "more canaries than nodes take them all",
			canary: canary(9, "zone", "", ""), nodes: nodes("a1:a", "b1:b"), want: []string{"a1", "b1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ChooseCanary(tc.canary, tc.nodes); !slices.Equal(got, tc.want) {
				t.Errorf("canary %v, want %v", got, tc.want)
			}
			// Deterministic: the order the nodes come in does not matter.
			rev := slices.Clone(tc.nodes)
			slices.Reverse(rev)
			if got := ChooseCanary(tc.canary, rev); !slices.Equal(got, tc.want) {
				t.Errorf("with nodes reversed: canary %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStoredCanaryIsKept(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "", "", "")}
	// n0 joins and sorts first; the stored choice n2 stays.
	r := next(set(ru, stored(nasv1alpha1.PhaseCanary, "", t0, "n2"), nil), nodes("n0", "n1", "n2"), t0)
	if got := r.Status.CanaryNodes; !slices.Equal(got, []string{"n2"}) {
		t.Fatalf("canary %v, want the stored [n2]", got)
	}
	// A status of another revision is not this rollout's: chosen afresh.
	old := stored(nasv1alpha1.PhaseComplete, "", t0, "n2")
	old.Revision = "agent-h1"
	r = next(set(ru, old, nil), nodes("n0", "n1", "n2"), t0)
	if got := r.Status.CanaryNodes; !slices.Equal(got, []string{"n0"}) || r.Status.Revision != rev {
		t.Fatalf("canary %v of %s, want [n0] of %s", got, r.Status.Revision, rev)
	}
}

func TestCanaryAndSoak(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(2, "zone", "10m", nasv1alpha1.PromotionAuto)}
	all := nodes("a1:a", "a2:a", "b1:b", "b2:b")
	for _, tc := range []struct {
		name      string
		prev      *nasv1alpha1.RolloutStatus
		nodes     []Node
		now       time.Time
		phase     nasv1alpha1.RolloutPhase
		since     time.Time
		due       time.Time
		hold      string // of a2, outside the canary
		canaryRun bool   // a1 not held
	}{
		{name: "a new rollout starts with the canary", nodes: all, now: t0,
			phase: nasv1alpha1.PhaseCanary, since: t0, hold: "waiting: canary [a1 b1] not yet updated and available", canaryRun: true},
		{name: "one canary updated is not enough", prev: stored(nasv1alpha1.PhaseCanary, "", t0, "a1", "b1"),
			nodes: updated(all, t0, "a1"), now: t0.Add(time.Minute),
			phase: nasv1alpha1.PhaseCanary, since: t0, hold: "waiting: canary [a1 b1] not yet updated and available", canaryRun: true},
		{name: "every canary available: the soak starts now", prev: stored(nasv1alpha1.PhaseCanary, "", t0, "a1", "b1"),
			nodes: updated(all, t0, "a1", "b1"), now: t0.Add(2 * time.Minute),
			phase: nasv1alpha1.PhaseSoaking, since: t0.Add(2 * time.Minute), due: t0.Add(12 * time.Minute),
			hold: "waiting: canary soak 10m0s left", canaryRun: true},
		{name: "the soak is measured from phaseSince", prev: stored(nasv1alpha1.PhaseSoaking, "", t0, "a1", "b1"),
			nodes: updated(all, t0, "a1", "b1"), now: t0.Add(7*time.Minute + 7*time.Second),
			phase: nasv1alpha1.PhaseSoaking, since: t0, due: t0.Add(10 * time.Minute),
			hold: "waiting: canary soak 2m53s left", canaryRun: true},
		{name: "a canary agent no longer available starts the canary again",
			prev: stored(nasv1alpha1.PhaseSoaking, "", t0, "a1", "b1"),
			nodes: func() []Node {
				ns := updated(all, t0, "a1", "b1")
				ns[2].Available = false // b1
				return ns
			}(), now: t0.Add(5 * time.Minute),
			phase: nasv1alpha1.PhaseCanary, since: t0.Add(5 * time.Minute), hold: "waiting: canary [a1 b1] not yet updated and available", canaryRun: true},
		{name: "soak over, Auto promotion: the rest in one wave", prev: stored(nasv1alpha1.PhaseSoaking, "", t0, "a1", "b1"),
			nodes: updated(all, t0, "a1", "b1"), now: t0.Add(10 * time.Minute),
			phase: nasv1alpha1.PhaseWaves, since: t0.Add(10 * time.Minute), canaryRun: true},
		{name: "a skipped (unhealthy) canary node is not waited for",
			prev: stored(nasv1alpha1.PhaseCanary, "", t0, "a1", "b1"),
			nodes: func() []Node {
				ns := updated(all, t0, "a1")
				ns[2].Skipped = true // b1
				return ns
			}(), now: t0.Add(time.Minute),
			phase: nasv1alpha1.PhaseSoaking, since: t0.Add(time.Minute), due: t0.Add(11 * time.Minute),
			hold: "waiting: canary soak 10m0s left", canaryRun: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := next(set(ru, tc.prev, nil), tc.nodes, tc.now)
			st := r.Status
			if st.Phase != tc.phase || !st.PhaseSince.Time.Equal(tc.since) {
				t.Errorf("phase %s since %v, want %s since %v", st.Phase, st.PhaseSince.Time, tc.phase, tc.since)
			}
			if !r.Due.Equal(tc.due) {
				t.Errorf("due %v, want %v", r.Due, tc.due)
			}
			if got := r.Holds["a2"]; got != tc.hold {
				t.Errorf("a2 held %q, want %q", got, tc.hold)
			}
			if _, held := r.Holds["a1"]; held == tc.canaryRun {
				t.Errorf("canary node a1 held %q", r.Holds["a1"])
			}
			if r.Failed {
				t.Errorf("failed: %+v", st.Failure)
			}
		})
	}
}

func TestManualPromotion(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "", "1m", nasv1alpha1.PromotionManual)}
	ns := updated(nodes("n1", "n2", "n3"), t0, "n1")
	soaked := stored(nasv1alpha1.PhaseSoaking, "", t0, "n1")
	for _, tc := range []struct {
		name    string
		prev    *nasv1alpha1.RolloutStatus
		promote string
		now     time.Time
		phase   nasv1alpha1.RolloutPhase
		held    bool
	}{
		{name: "soaking ignores an early promote", prev: soaked, promote: rev, now: t0.Add(30 * time.Second),
			phase: nasv1alpha1.PhaseSoaking, held: true},
		{name: "soaked, no promote: awaiting", prev: soaked, now: t0.Add(time.Minute),
			phase: nasv1alpha1.PhaseAwaitingPromotion, held: true},
		{name: "a promote of another revision does not promote this one", prev: soaked, promote: "agent-h1", now: t0.Add(time.Minute),
			phase: nasv1alpha1.PhaseAwaitingPromotion, held: true},
		{name: "awaiting for hours stays awaiting", prev: stored(nasv1alpha1.PhaseAwaitingPromotion, "", t0, "n1"),
			promote: "agent-h3", now: t0.Add(5 * time.Hour), phase: nasv1alpha1.PhaseAwaitingPromotion, held: true},
		{name: "a promote naming this revision goes on", prev: stored(nasv1alpha1.PhaseAwaitingPromotion, "", t0, "n1"),
			promote: rev, now: t0.Add(5 * time.Hour), phase: nasv1alpha1.PhaseWaves},
		{name: "a promote given during the soak counts once the soak is over", prev: soaked, promote: rev, now: t0.Add(time.Minute),
			phase: nasv1alpha1.PhaseWaves},
		{name: "once promoted, the promote is not asked for again", prev: stored(nasv1alpha1.PhaseWaves, "", t0, "n1"),
			now: t0.Add(time.Hour), phase: nasv1alpha1.PhaseWaves},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ann map[string]string
			if tc.promote != "" {
				ann = map[string]string{nasv1alpha1.AnnotationPromote: tc.promote}
			}
			r := next(set(ru, tc.prev, ann), ns, tc.now)
			if r.Status.Phase != tc.phase {
				t.Errorf("phase %s, want %s", r.Status.Phase, tc.phase)
			}
			if _, held := r.Holds["n2"]; held != tc.held {
				t.Errorf("n2 held %q, want held %t", r.Holds["n2"], tc.held)
			}
			if tc.phase == nasv1alpha1.PhaseAwaitingPromotion && r.Holds["n2"] != "waiting: promotion (kubectl nodeagentset rollout promote)" {
				t.Errorf("n2 held %q", r.Holds["n2"])
			}
		})
	}
}

func TestWaves(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "", "", ""), Waves: &nasv1alpha1.Waves{By: "zone", Soak: "5m"}}
	// Canary a1; waves a (a2), b (b1, b2), c (c1), then x1 and x2 without a zone.
	all := nodes("a1:a", "a2:a", "b2:b", "b1:b", "c1:c", "x1:-", "x2:-")
	for _, tc := range []struct {
		name  string
		prev  *nasv1alpha1.RolloutStatus
		up    []string
		now   time.Time
		phase string // Phase/Wave
		since time.Time
		due   time.Time
		holds map[string]string
	}{
		{name: "the canary done, the first wave is the first zone", prev: stored(nasv1alpha1.PhaseCanary, "", t0, "a1"),
			up: []string{"a1"}, now: t0, phase: "Waves/a", since: t0,
			holds: map[string]string{"b1": "waiting: wave zone=b after zone=a", "c1": "waiting: wave zone=c after zone=a",
				"x1": "waiting: wave nodes without zone after zone=a"}},
		{name: "a wave done soaks before the next", prev: stored(nasv1alpha1.PhaseWaves, "a", t0, "a1"),
			up: []string{"a1", "a2"}, now: t0.Add(time.Minute), phase: "Soaking/a", since: t0.Add(time.Minute), due: t0.Add(6 * time.Minute),
			holds: map[string]string{"b1": "waiting: wave soak of zone=a, 5m0s left", "x2": "waiting: wave soak of zone=a, 5m0s left"}},
		{name: "the wave soak is measured from phaseSince", prev: stored(nasv1alpha1.PhaseSoaking, "a", t0, "a1"),
			up: []string{"a1", "a2"}, now: t0.Add(4 * time.Minute), phase: "Soaking/a", since: t0, due: t0.Add(5 * time.Minute),
			holds: map[string]string{"b1": "waiting: wave soak of zone=a, 1m0s left"}},
		{name: "soak over: the next zone", prev: stored(nasv1alpha1.PhaseSoaking, "a", t0, "a1"),
			up: []string{"a1", "a2"}, now: t0.Add(5 * time.Minute), phase: "Waves/b", since: t0.Add(5 * time.Minute),
			holds: map[string]string{"a2": "", "c1": "waiting: wave zone=c after zone=b"}},
		{name: "a soaked wave is not soaked again", prev: stored(nasv1alpha1.PhaseWaves, "b", t0, "a1"),
			up: []string{"a1", "a2", "b1"}, now: t0.Add(time.Hour), phase: "Waves/b", since: t0,
			holds: map[string]string{"b2": "", "c1": "waiting: wave zone=c after zone=b"}},
		{name: "nodes without the label are the last wave", prev: stored(nasv1alpha1.PhaseSoaking, "c", t0, "a1"),
			up: []string{"a1", "a2", "b1", "b2", "c1"}, now: t0.Add(5 * time.Minute), phase: "Waves/", since: t0.Add(5 * time.Minute),
			holds: map[string]string{"x1": "", "x2": ""}},
		{name: "the last wave is not soaked: complete", prev: stored(nasv1alpha1.PhaseWaves, "", t0, "a1"),
			up: []string{"a1", "a2", "b1", "b2", "c1", "x1", "x2"}, now: t0.Add(time.Minute), phase: "Complete/", since: t0.Add(time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := next(set(ru, tc.prev, nil), updated(all, t0, tc.up...), tc.now)
			st := r.Status
			if got := string(st.Phase) + "/" + st.Wave; got != tc.phase || !st.PhaseSince.Time.Equal(tc.since) {
				t.Errorf("%s since %v, want %s since %v", got, st.PhaseSince.Time, tc.phase, tc.since)
			}
			if !r.Due.Equal(tc.due) {
				t.Errorf("due %v, want %v", r.Due, tc.due)
			}
			for node, want := range tc.holds {
				if got := r.Holds[node]; got != want {
					t.Errorf("%s held %q, want %q", node, got, want)
				}
			}
		})
	}
}

func TestWavesWithoutCanaryAndWithoutSoak(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Waves: &nasv1alpha1.Waves{By: "zone"}}
	all := nodes("a1:a", "b1:b", "x1:-")
	r := next(set(ru, nil, nil), all, t0)
	if r.Status.Phase != nasv1alpha1.PhaseWaves || r.Status.Wave != "a" || len(r.Status.CanaryNodes) != 0 {
		t.Fatalf("first pass %+v, want Waves/a without a canary", r.Status)
	}
	// Without a soak the next wave starts in the same pass the last ends.
	r = next(set(ru, r.Status, nil), updated(all, t0, "a1"), t0.Add(time.Second))
	if r.Status.Phase != nasv1alpha1.PhaseWaves || r.Status.Wave != "b" || r.Holds["x1"] == "" {
		t.Fatalf("after zone a: %+v holds %v, want Waves/b holding x1", r.Status, r.Holds)
	}
}

func TestRollingDoneOrPaused(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "", "", ""), Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](0)}}
	if r := Next(Input{Set: set(nasv1alpha1.RollingUpdate{}, nil, nil), Revision: rev, Rolling: true, Nodes: nodes("n1"), Now: t0}); r.Status != nil {
		t.Errorf("a set without stages got %+v", r.Status)
	}
	failed := stored(nasv1alpha1.PhaseFailed, "", t0, "n1")
	failed.Failure = &nasv1alpha1.RolloutFailure{Node: "n1", Reason: "CrashLoopBackOff"}
	r := Next(Input{Set: set(ru, failed, nil), Revision: rev, Nodes: nodes("n1"), Now: t0.Add(time.Minute)})
	if r.Status.Phase != nasv1alpha1.PhaseComplete || r.Status.Failure != nil || r.Failed {
		t.Errorf("not rolling: %+v, want Complete without the failure", r.Status)
	}
	ru.Paused = true
	r = next(set(ru, nil, nil), nodes("n1", "n2"), t0)
	if r.Status.Phase != nasv1alpha1.PhasePaused {
		t.Errorf("paused: phase %s", r.Status.Phase)
	}
}

// crashing is a canary agent of the update revision in a crash loop.
func crashing(ns []Node, node string, restarts int32) []Node {
	ns = slices.Clone(ns)
	for i := range ns {
		if ns[i].Name == node {
			p := agent(node, t0)
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", RestartCount: restarts,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s"}}}}
			ns[i].Update, ns[i].Available, ns[i].Outdated = p, false, false
		}
	}
	return ns
}

func TestHealthFailures(t *testing.T) {
	all := nodes("a1:a", "a2:a", "b1:b")
	health := func(action nasv1alpha1.FailureAction) nasv1alpha1.RollingUpdate {
		return nasv1alpha1.RollingUpdate{Canary: canary(2, "zone", "", ""),
			Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](3), MaxUnavailableTime: ptr.To(nasv1alpha1.Duration("5m")), FailureAction: action}}
	}
	for _, tc := range []struct {
		name    string
		ru      nasv1alpha1.RollingUpdate
		ann     map[string]string
		nodes   []Node
		now     time.Time
		phase   nasv1alpha1.RolloutPhase
		reason  string
		abort   bool
		heldAll bool
		due     time.Time
	}{
		{name: "restarts within maxRestarts pass", ru: health(""), nodes: crashing(all, "a1", 3), now: t0.Add(time.Minute),
			phase: nasv1alpha1.PhaseCanary, due: t0.Add(5 * time.Minute)},
		{name: "restarts over maxRestarts fail, typed CrashLoopBackOff; Pause holds every node", ru: health(""),
			nodes: crashing(all, "a1", 4), now: t0.Add(time.Minute), phase: nasv1alpha1.PhaseFailed, reason: "CrashLoopBackOff", heldAll: true},
		{name: "failureAction Abort holds nothing: the budgets roll the canary back", ru: health(nasv1alpha1.FailureAbort),
			nodes: crashing(all, "a1", 4), now: t0.Add(time.Minute), phase: nasv1alpha1.PhaseAborted, reason: "CrashLoopBackOff", abort: true},
		{name: "unavailable past maxUnavailableTime fails", ru: health(""),
			nodes: crashing(all, "a1", 1), now: t0.Add(5 * time.Minute), phase: nasv1alpha1.PhaseFailed, reason: "CrashLoopBackOff", heldAll: true},
		{name: "the node turning NotReady after the agent fails", ru: health(""),
			nodes: func() []Node {
				ns := updated(all, t0, "a1")
				ns[0].Health = nodehealth.Health{Reason: "NotReady", Since: t0.Add(time.Minute)}
				return ns
			}(), now: t0.Add(2 * time.Minute), phase: nasv1alpha1.PhaseFailed, reason: "NodeNotReady", heldAll: true},
		{name: "the abort verb for this revision aborts a healthy rollout", ru: health(""),
			ann: map[string]string{nasv1alpha1.AnnotationAbort: rev}, nodes: updated(all, t0, "a1"), now: t0,
			phase: nasv1alpha1.PhaseAborted, reason: "Aborted", abort: true},
		{name: "an abort of another revision does nothing", ru: health(""),
			ann: map[string]string{nasv1alpha1.AnnotationAbort: "agent-h1"}, nodes: updated(all, t0, "a1"), now: t0,
			phase: nasv1alpha1.PhaseCanary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := next(set(tc.ru, nil, tc.ann), tc.nodes, tc.now)
			if r.Status.Phase != tc.phase || r.Failed != (tc.reason != "") || r.Abort != tc.abort {
				t.Fatalf("phase %s failed %t abort %t, want %s %t %t", r.Status.Phase, r.Failed, r.Abort, tc.phase, tc.reason != "", tc.abort)
			}
			if tc.reason != "" {
				// The abort verb is no check: nothing new failed.
				if f := r.Status.Failure; f == nil || f.Reason != tc.reason || tc.reason != "Aborted" && (r.NewFailure == nil || r.NewFailure.Cause != tc.reason) {
					t.Errorf("failure %+v new %+v, want reason %s", f, r.NewFailure, tc.reason)
				}
			}
			if tc.reason != "" && tc.reason != "Aborted" && (r.Status.Failure.Node != "a1" || r.Status.Failure.Pod != "agent-a1") {
				t.Errorf("failure names node %q pod %q, want a1 and agent-a1", r.Status.Failure.Node, r.Status.Failure.Pod)
			}
			if heldAll := len(r.Holds) == len(tc.nodes); heldAll != tc.heldAll && tc.reason != "" {
				t.Errorf("holds %v, want every node held %t", r.Holds, tc.heldAll)
			}
			if !r.Due.Equal(tc.due) {
				t.Errorf("due %v, want %v", r.Due, tc.due)
			}
		})
	}
}

func TestFailureStaysUntilRetryOfThatFailure(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "", "", ""), Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](0)}}
	failedAt := t0.Add(time.Minute)
	failed := stored(nasv1alpha1.PhaseFailed, "", failedAt, "n1")
	failed.Failure = &nasv1alpha1.RolloutFailure{Node: "n1", Pod: "agent-n1", Reason: "CrashLoopBackOff"}
	healthy := updated(nodes("n1", "n2"), t0, "n1")
	for _, tc := range []struct {
		name  string
		ann   map[string]string
		nodes []Node
		phase nasv1alpha1.RolloutPhase
		fresh bool // a new phaseSince: a later failure a stale retry cannot clear
	}{
		{name: "a failure stays even once the agent is healthy", nodes: healthy, phase: nasv1alpha1.PhaseFailed},
		{name: "retry of this revision and failure clears it", nodes: healthy, phase: nasv1alpha1.PhaseWaves, fresh: true,
			ann: map[string]string{nasv1alpha1.AnnotationRetry: RetryValue(rev, failedAt)}},
		{name: "retry of another revision does not", nodes: healthy, phase: nasv1alpha1.PhaseFailed,
			ann: map[string]string{nasv1alpha1.AnnotationRetry: RetryValue("agent-h1", failedAt)}},
		{name: "retry of an earlier failure of this revision does not", nodes: healthy, phase: nasv1alpha1.PhaseFailed,
			ann: map[string]string{nasv1alpha1.AnnotationRetry: RetryValue(rev, t0)}},
		{name: "retry while the agent still fails: failed again, as a new failure", nodes: crashing(healthy, "n1", 2),
			phase: nasv1alpha1.PhaseFailed, fresh: true,
			ann: map[string]string{nasv1alpha1.AnnotationRetry: RetryValue(rev, failedAt)}},
		{name: "retry with the abort verb still given stays aborted", nodes: healthy, phase: nasv1alpha1.PhaseAborted, fresh: true,
			ann: map[string]string{nasv1alpha1.AnnotationRetry: RetryValue(rev, failedAt), nasv1alpha1.AnnotationAbort: rev}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(time.Hour)
			r := next(set(ru, failed.DeepCopy(), tc.ann), tc.nodes, now)
			if r.Status.Phase != tc.phase {
				t.Fatalf("phase %s (failure %+v), want %s", r.Status.Phase, r.Status.Failure, tc.phase)
			}
			if fresh := !r.Status.PhaseSince.Time.Equal(failedAt); fresh != tc.fresh {
				t.Errorf("phaseSince %v, want a new one %t", r.Status.PhaseSince.Time, tc.fresh)
			}
			if tc.phase == nasv1alpha1.PhaseFailed && !tc.fresh && r.NewFailure != nil {
				t.Errorf("a stored failure reported as new: %+v", r.NewFailure)
			}
			// The next pass with the same annotations decides the same: a
			// retry acts once.
			again := next(set(ru, r.Status, tc.ann), tc.nodes, now.Add(time.Minute))
			if again.Status.Phase != tc.phase {
				t.Errorf("next pass: phase %s, want %s", again.Status.Phase, tc.phase)
			}
		})
	}
}

func TestRetryDuringWavesResumesTheWaves(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "zone", "1h", nasv1alpha1.PromotionManual),
		Waves: &nasv1alpha1.Waves{By: "zone"}, Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](0)}}
	failedAt := t0.Add(time.Minute)
	failed := stored(nasv1alpha1.PhaseFailed, "b", failedAt, "a1")
	failed.Failure = &nasv1alpha1.RolloutFailure{Node: "b1", Reason: "RestartCount"}
	ns := updated(nodes("a1:a", "a2:a", "b1:b", "b2:b"), t0, "a1", "a2", "b1")
	r := next(set(ru, failed, map[string]string{nasv1alpha1.AnnotationRetry: RetryValue(rev, failedAt)}), ns, t0.Add(time.Hour))
	if got := fmt.Sprintf("%s/%s", r.Status.Phase, r.Status.Wave); got != "Waves/b" {
		t.Errorf("after retry in wave b: %s, want Waves/b (not the canary soak and promotion again)", got)
	}
}

func TestPauseDuringWavesResumesTheWave(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "zone", "1h", nasv1alpha1.PromotionAuto), Waves: &nasv1alpha1.Waves{By: "zone"}, Paused: true}
	ns := updated(nodes("a1:a", "a2:a", "b1:b", "b2:b"), t0, "a1", "a2", "b1")
	r := next(set(ru, stored(nasv1alpha1.PhaseWaves, "b", t0, "a1"), nil), ns, t0.Add(time.Minute))
	if got := fmt.Sprintf("%s/%s", r.Status.Phase, r.Status.Wave); got != "Paused/b" {
		t.Fatalf("paused in wave b: %s, want Paused/b", got)
	}
	ru.Paused = false
	r = next(set(ru, r.Status, nil), ns, t0.Add(2*time.Minute))
	if got := fmt.Sprintf("%s/%s", r.Status.Phase, r.Status.Wave); got != "Waves/b" {
		t.Errorf("resumed: %s, want Waves/b (not the canary soak again)", got)
	}
}

// A canary whose only node is skipped as unhealthy (cordoned before it was
// updated) must not soak nothing and let the waves take the fleet.
func TestCanaryOfSkippedNodesOnlyWaits(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "", "", nasv1alpha1.PromotionAuto)}
	ns := nodes("a1", "a2", "a3")
	ns[0].Skipped = true
	r := next(set(ru, stored(nasv1alpha1.PhaseCanary, "", t0, "a1"), nil), ns, t0.Add(time.Hour))
	if r.Status.Phase != nasv1alpha1.PhaseCanary || !strings.Contains(r.Holds["a2"], "unhealthy: no canary agent runs the update revision") {
		t.Fatalf("phase %s, a2 held %q; want the canary stage to wait for a real canary agent", r.Status.Phase, r.Holds["a2"])
	}
}

// Once Complete, a pass that still sees the rollout running (the cached
// set a status write behind) keeps it Complete: walking the waves again
// soaked the first wave anew (seen under load in CI).
func TestCompleteStaysComplete(t *testing.T) {
	ru := nasv1alpha1.RollingUpdate{Canary: canary(1, "zone", "", ""), Waves: &nasv1alpha1.Waves{By: "zone", Soak: "1m"}}
	ns := updated(nodes("a1:a", "a2:a", "b1:b"), t0, "a1", "a2", "b1")
	r := next(set(ru, stored(nasv1alpha1.PhaseComplete, "", t0, "a1"), nil), ns, t0.Add(time.Second))
	if r.Status.Phase != nasv1alpha1.PhaseComplete || r.Status.Wave != "" || !r.Status.PhaseSince.Time.Equal(t0) {
		t.Fatalf("phase %s wave %q since %v; want Complete kept from %v", r.Status.Phase, r.Status.Wave, r.Status.PhaseSince, t0)
	}
	// Nodes a lowered partition releases afterwards still go wave by wave,
	// without soaking the waves done before.
	ns = updated(nodes("a1:a", "a2:a", "b1:b", "c1:c"), t0, "a1", "a2")
	r = next(set(ru, stored(nasv1alpha1.PhaseComplete, "", t0, "a1"), nil), ns, t0.Add(time.Second))
	if r.Status.Phase != nasv1alpha1.PhaseWaves || r.Status.Wave != "b" || r.Holds["c1"] == "" {
		t.Fatalf("phase %s wave %q, c1 held %q; want wave b, c1 held", r.Status.Phase, r.Status.Wave, r.Holds["c1"])
	}
}
