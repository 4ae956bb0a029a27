package controller_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/status"
)

// zoned creates n nodes per zone (a, b, c), labelled zone=<z>, named
// <test>-0.. in zone order; it returns the zone of each node.
func (f *fixture) zoned(perZone int) map[string]string {
	f.t.Helper()
	zones := map[string]string{}
	i := 0
	for _, z := range []string{"a", "b", "c"} {
		for _, name := range f.nodes(perZone, func(n *corev1.Node) {
			n.Name = fmt.Sprintf("%s-%d", f.name, i)
			n.Labels["zone"] = z
			i++
		}) {
			zones[name] = z
		}
	}
	return zones
}

// phaseWatch records every status.rollout phase/wave the set's status
// writes show, consecutive repeats folded.
type phaseWatch struct {
	mu     sync.Mutex
	phases []string
}

func (f *fixture) watchPhases(set *nasv1alpha1.NodeAgentSet) *phaseWatch {
	f.t.Helper()
	w, err := k8s.Watch(f.ctx, &nasv1alpha1.NodeAgentSetList{}, client.InNamespace(f.ns),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", set.Name)})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(w.Stop)
	pw := &phaseWatch{}
	go func() {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*nasv1alpha1.NodeAgentSet)
			if !ok || ev.Type == watch.Deleted || s.Status.Rollout == nil {
				continue
			}
			ph := string(s.Status.Rollout.Phase) + "/" + s.Status.Rollout.Wave
			pw.mu.Lock()
			if len(pw.phases) == 0 || pw.phases[len(pw.phases)-1] != ph {
				pw.phases = append(pw.phases, ph)
			}
			pw.mu.Unlock()
		}
	}()
	return pw
}

func (pw *phaseWatch) seen() []string {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return slices.Clone(pw.phases)
}

// onRevision lists the nodes whose live agent carries hash, and whether
// each of them is Ready.
func (f *fixture) onRevision(set *nasv1alpha1.NodeAgentSet, hash string) map[string]bool {
	out := map[string]bool{}
	for _, p := range f.pods(set) {
		if podtemplate.Hash(&p) == hash {
			_, out[podtemplate.NodeOf(&p)] = plan.ReadySince(&p)
		}
	}
	return out
}

func hashOf(revision, set string) string { return strings.TrimPrefix(revision, set+"-") }

// settledOn waits for a first fan-out to be Ready and current.
func (f *fixture) settledOn(set *nasv1alpha1.NodeAgentSet, nodes int) *nasv1alpha1.NodeAgentSet {
	f.t.Helper()
	var got *nasv1alpha1.NodeAgentSet
	eventually(f.t, "the first fan-out Ready and current", func() (bool, string) {
		f.markAllReady(set)
		got = f.get(set)
		return got.Status.CurrentRevision != "" && got.Status.CurrentRevision == got.Status.UpdateRevision &&
				got.Status.NumberAvailable == int32(nodes),
			fmt.Sprintf("current %q update %q available %d", got.Status.CurrentRevision, got.Status.UpdateRevision, got.Status.NumberAvailable)
	})
	return got
}

// A canary of one node per zone, soak, manual promotion, then the zones
// one after the other: status.rollout says so at each step, and at no
// moment is a node outside the stage updated.
func TestStagedRolloutCanarySoakPromotionWaves(t *testing.T) {
	f := newFixture(t, "staged")
	zones := f.zoned(2)
	set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Canary: &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(3)), SpreadBy: "zone", Soak: "2s", Promotion: nasv1alpha1.PromotionManual},
			Waves:  &nasv1alpha1.Waves{By: "zone", Soak: "1s"}}
	})
	f.create(set)
	f.settledOn(set, len(zones))
	pw := f.watchPhases(set)
	f.update(set, image("registry.example/agent:2"))
	var rev string
	eventually(t, "the canary chosen, one per zone", func() (bool, string) {
		r := f.get(set).Status.Rollout
		if r == nil || r.Phase != nasv1alpha1.PhaseCanary {
			return false, fmt.Sprintf("%+v", r)
		}
		rev = r.Revision
		return slices.Equal(r.CanaryNodes, []string{"staged-0", "staged-2", "staged-4"}), fmt.Sprintf("canary %v", r.CanaryNodes)
	})
	hash := hashOf(rev, set.Name)
	canary := map[string]bool{"staged-0": true, "staged-2": true, "staged-4": true}
	promoted := false
	// check is the order, from the pods alone: before the promote only
	// canary nodes run the new revision; a zone's non-canary nodes only once
	// every node of the zones before it runs it, Ready.
	check := func() {
		t.Helper()
		on := f.onRevision(set, hash)
		for node := range on {
			if canary[node] {
				continue
			}
			if !promoted {
				t.Fatalf("node %s updated before the promotion; on the new revision: %v", node, on)
			}
			for other, z := range zones {
				if z < zones[node] && !canary[other] && !on[other] {
					t.Fatalf("node %s (zone %s) updated while %s (zone %s) is not done; on the new revision: %v", node, zones[node], other, z, on)
				}
			}
		}
	}
	eventually(t, "awaiting promotion after the canary soaked", func() (bool, string) {
		f.markAllReady(set)
		check()
		r := f.get(set).Status.Rollout
		return r.Phase == nasv1alpha1.PhaseAwaitingPromotion, string(r.Phase)
	})
	got := f.get(set)
	if c := meta.FindStatusCondition(got.Status.Conditions, nasv1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
		t.Errorf("awaiting promotion reported Stalled: %+v", c)
	}
	// A promote of another revision does nothing.
	f.update(set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Annotations = map[string]string{nasv1alpha1.AnnotationPromote: set.Name + "-0000"}
	})
	holds(t, 2*time.Second, "awaiting promotion", func() (bool, string) {
		check()
		r := f.get(set).Status.Rollout
		return r.Phase == nasv1alpha1.PhaseAwaitingPromotion, string(r.Phase)
	})
	promoted = true
	f.update(set, func(s *nasv1alpha1.NodeAgentSet) { s.Annotations[nasv1alpha1.AnnotationPromote] = rev })
	eventually(t, "the waves done", func() (bool, string) {
		f.markAllReady(set)
		check()
		got := f.get(set)
		return got.Status.Rollout.Phase == nasv1alpha1.PhaseComplete && got.Status.CurrentRevision == rev &&
				meta.IsStatusConditionFalse(got.Status.Conditions, nasv1alpha1.ConditionReconciling),
			fmt.Sprintf("rollout %+v current %s", got.Status.Rollout, got.Status.CurrentRevision)
	})
	want := []string{"Complete/", "Canary/", "Soaking/", "AwaitingPromotion/", "Waves/a", "Soaking/a", "Waves/b", "Soaking/b", "Waves/c", "Complete/"}
	eventually(t, "every phase seen in order", func() (bool, string) {
		return slices.Equal(pw.seen(), want), fmt.Sprintf("%v, want %v", pw.seen(), want)
	})
}

// counterValue reads a counter of one set and one label value.
func counterValue(t *testing.T, name, namespace, set, key, value string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if f.GetName() == name && label(m, "namespace") == namespace && label(m, "name") == set && label(m, key) == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// crashLoop plays the kubelet of a crash-looping agent through pods/status.
func (f *fixture) crashLoop(pod *corev1.Pod, restarts int32) {
	f.t.Helper()
	p := pod.DeepCopy()
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.Now()}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", Image: p.Spec.Containers[0].Image, RestartCount: restarts,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}}}}}
	if err := k8s.Status().Update(f.ctx, p); err != nil {
		f.t.Fatal(err)
	}
}

// A crash-looping canary fails the check: Stalled HealthCheckFailed, a
// Warning event, the failure counted by cause, no node beyond the canary
// updated and a node that joins gets the current revision; the abort verb
// then puts the canary node back on the current revision.
func TestCrashLoopingCanaryStallsAndAbortRestoresTheCurrentRevision(t *testing.T) {
	f := newFixture(t, "crashcanary")
	zones := f.zoned(1)
	set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Canary: &nasv1alpha1.Canary{SpreadBy: "zone"}, Waves: &nasv1alpha1.Waves{By: "zone"},
			Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](2)}}
	})
	f.create(set)
	current := hashOf(f.settledOn(set, len(zones)).Status.CurrentRevision, set.Name)
	before := counterValue(t, "nodeagentset_health_check_failures_total", f.ns, set.Name, "cause", "CrashLoopBackOff")
	f.update(set, image("registry.example/agent:2-broken"))
	var canaryPod corev1.Pod
	eventually(t, "the canary agent created", func() (bool, string) {
		pods := byNode(f.pods(set))["crashcanary-0"]
		ok := len(pods) == 1 && pods[0].Spec.Containers[0].Image == "registry.example/agent:2-broken"
		if ok {
			canaryPod = pods[0]
		}
		return ok, describe(byNode(f.pods(set)))
	})
	f.crashLoop(&canaryPod, 3)
	eventually(t, "Stalled HealthCheckFailed naming node, pod and cause", func() (bool, string) {
		got := f.get(set)
		c := meta.FindStatusCondition(got.Status.Conditions, nasv1alpha1.ConditionStalled)
		r := got.Status.Rollout
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == status.ReasonHealthCheckFailed &&
				strings.Contains(c.Message, "CrashLoopBackOff on node crashcanary-0, pod "+canaryPod.Name) &&
				meta.IsStatusConditionFalse(got.Status.Conditions, nasv1alpha1.ConditionProgressing) &&
				r.Phase == nasv1alpha1.PhaseFailed && r.Failure != nil && r.Failure.Pod == canaryPod.Name,
			fmt.Sprintf("stalled %+v rollout %+v", c, r)
	})
	eventually(t, "a Warning event and the failure counted", func() (bool, string) {
		var events eventsv1.EventList
		if err := k8s.List(f.ctx, &events, client.InNamespace(f.ns)); err != nil {
			return false, err.Error()
		}
		warned := slices.ContainsFunc(events.Items, func(e eventsv1.Event) bool {
			return e.Regarding.Name == set.Name && e.Type == corev1.EventTypeWarning && e.Reason == status.ReasonHealthCheckFailed &&
				strings.Contains(e.Note, "CrashLoopBackOff on node crashcanary-0, pod "+canaryPod.Name)
		})
		n := counterValue(t, "nodeagentset_health_check_failures_total", f.ns, set.Name, "cause", "CrashLoopBackOff")
		return warned && n == before+1, fmt.Sprintf("warned %t, counter %v (before %v)", warned, n, before)
	})
	// Paused: nothing beyond the canary, however long; a node that joins
	// gets the current revision.
	joined := f.nodes(1, func(n *corev1.Node) { n.Name = "crashcanary-joined"; n.Labels["zone"] = "a" })[0]
	eventually(t, "the joined node's agent of the current revision", func() (bool, string) {
		pods := byNode(f.pods(set))[joined]
		return len(pods) == 1 && podtemplate.Hash(&pods[0]) == current && pods[0].Spec.Containers[0].Image == "registry.example/agent:1",
			describe(byNode(f.pods(set)))
	})
	updated := f.get(set).Status.Rollout.Revision
	holds(t, 2*time.Second, "no node beyond the canary updated", func() (bool, string) {
		f.markAllReady(set)
		on := f.onRevision(set, hashOf(updated, set.Name))
		delete(on, "crashcanary-0")
		return len(on) == 0, fmt.Sprintf("%v", on)
	})
	if n := counterValue(t, "nodeagentset_health_check_failures_total", f.ns, set.Name, "cause", "CrashLoopBackOff"); n != before+1 {
		t.Errorf("the one failure counted %v times", n-before)
	}
	f.update(set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Annotations = map[string]string{nasv1alpha1.AnnotationAbort: updated}
	})
	eventually(t, "the canary node back on the current revision", func() (bool, string) {
		f.markAllReady(set)
		got := f.get(set)
		pods := byNode(f.pods(set))["crashcanary-0"]
		return len(pods) == 1 && pods[0].UID != canaryPod.UID && podtemplate.Hash(&pods[0]) == current &&
				pods[0].Spec.Containers[0].Image == "registry.example/agent:1" && got.Status.Rollout.Phase == nasv1alpha1.PhaseAborted,
			fmt.Sprintf("%s; rollout %+v", describe(byNode(f.pods(set))), got.Status.Rollout)
	})
	got := f.get(set)
	if !meta.IsStatusConditionTrue(got.Status.Conditions, nasv1alpha1.ConditionStalled) {
		t.Errorf("an aborted rollout no longer reported failed: %+v", got.Status.Conditions)
	}
	for node := range zones {
		if pods := byNode(f.pods(set))[node]; len(pods) != 1 || podtemplate.Hash(&pods[0]) != current {
			t.Errorf("node %s: %v, want one agent of the current revision %s", node, podNames(pods), current)
		}
	}
	// Retry (as the plugin writes it: naming the failure, the abort
	// dropped) clears the failure on the server and starts the canary again.
	f.update(set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Annotations = map[string]string{nasv1alpha1.AnnotationRetry: updated + "@" + got.Status.Rollout.PhaseSince.UTC().Format(time.RFC3339)}
	})
	eventually(t, "the canary again, the failure gone", func() (bool, string) {
		got := f.get(set)
		r := got.Status.Rollout
		pods := byNode(f.pods(set))["crashcanary-0"]
		return r.Failure == nil && r.Phase == nasv1alpha1.PhaseCanary && !meta.IsStatusConditionTrue(got.Status.Conditions, nasv1alpha1.ConditionStalled) &&
				len(pods) == 1 && pods[0].Spec.Containers[0].Image == "registry.example/agent:2-broken",
			fmt.Sprintf("rollout %+v failure %+v; %s", r, r.Failure, describe(byNode(f.pods(set))))
	})
}

// With failureAction Abort the check itself puts the canary back.
func TestFailureActionAbortRecreatesTheCanaryFromTheCurrentRevision(t *testing.T) {
	f := newFixture(t, "abortcanary")
	zones := f.zoned(1)
	set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Canary: &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(2)), SpreadBy: "zone"},
			Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](0), FailureAction: nasv1alpha1.FailureAbort}}
	})
	f.create(set)
	current := hashOf(f.settledOn(set, len(zones)).Status.CurrentRevision, set.Name)
	f.update(set, image("registry.example/agent:2-broken"))
	var crashed canaryAgent
	eventually(t, "a canary agent created", func() (bool, string) {
		for _, n := range []string{"abortcanary-0", "abortcanary-1"} {
			if pods := byNode(f.pods(set))[n]; len(pods) == 1 && podtemplate.Hash(&pods[0]) != current {
				crashed = canaryAgent{node: n, pod: pods[0]}
				return true, ""
			}
		}
		return false, describe(byNode(f.pods(set)))
	})
	f.crashLoop(&crashed.pod, 1)
	eventually(t, "aborted, every node on the current revision", func() (bool, string) {
		f.markAllReady(set)
		got := f.get(set)
		ok := got.Status.Rollout != nil && got.Status.Rollout.Phase == nasv1alpha1.PhaseAborted &&
			meta.IsStatusConditionTrue(got.Status.Conditions, nasv1alpha1.ConditionStalled)
		for node := range zones {
			pods := byNode(f.pods(set))[node]
			ok = ok && len(pods) == 1 && podtemplate.Hash(&pods[0]) == current && pods[0].Spec.Containers[0].Image == "registry.example/agent:1"
		}
		return ok, fmt.Sprintf("%s; rollout %+v", describe(byNode(f.pods(set))), got.Status.Rollout)
	})
	if pods := byNode(f.pods(set))[crashed.node]; pods[0].UID == crashed.pod.UID {
		t.Errorf("the crashing canary agent on %s was not replaced", crashed.node)
	}
}

type canaryAgent struct {
	node string
	pod  corev1.Pod
}
