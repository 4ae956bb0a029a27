package controller_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kstatusv1 "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	testkstatus "github.com/nodeagentset/nodeagentset/test/kstatus"
)

func TestFansOutToEveryEligibleNodeAndReportsStatus(t *testing.T) {
	f := newFixture(t, "fanout")
	nodes := f.nodes(5)
	other := f.nodes(1, func(n *corev1.Node) { n.Name = "fanout-unlabelled"; n.Labels = nil })
	set := f.set()

	eventually(t, "one pod on each labelled node", f.onePerNode(set, nodes))
	for _, pod := range f.pods(set) {
		node := podtemplate.NodeOf(&pod)
		if node == other[0] {
			t.Errorf("pod %s placed on unlabelled node", pod.Name)
		}
		if pod.Labels[nasv1alpha1.LabelSetName] != set.Name || pod.Labels[nasv1alpha1.LabelRevisionHash] == "" || pod.Labels["app"] != "fanout" {
			t.Errorf("pod %s labels = %v", pod.Name, pod.Labels)
		}
		ref := metav1.GetControllerOf(&pod)
		if ref == nil || ref.UID != f.get(set).UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("pod %s controller reference = %+v", pod.Name, ref)
		}
		terms := pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		if len(terms) != 1 || len(terms[0].MatchFields) != 1 || terms[0].MatchFields[0].Key != "metadata.name" {
			t.Errorf("pod %s is not pinned by matchFields metadata.name: %+v", pod.Name, terms)
		}
		if pod.Spec.NodeName != "" {
			t.Errorf("pod %s has spec.nodeName %q; binding is the scheduler's job", pod.Name, pod.Spec.NodeName)
		}
		if !tolerates(pod.Spec.Tolerations, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute) {
			t.Errorf("pod %s lacks the default unreachable toleration: %+v", pod.Name, pod.Spec.Tolerations)
		}
	}

	// Before any pod is Ready: not Available, reconciling.
	eventually(t, "status before readiness", func() (bool, string) {
		st := f.get(set).Status
		return st.DesiredNumberScheduled == 5 && st.CurrentNumberScheduled == 5 && st.NumberReady == 0 &&
			meta.IsStatusConditionFalse(st.Conditions, nasv1alpha1.ConditionAvailable) &&
			meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionReconciling), fmt.Sprintf("%+v", st)
	})
	if got := kstatus(t, f.get(set)); got != kstatusv1.InProgressStatus {
		t.Errorf("kstatus before readiness = %s, want InProgress", got)
	}

	f.markAllReady(set)
	eventually(t, "converged status", func() (bool, string) {
		got := f.get(set)
		st := got.Status
		return st.ObservedGeneration == got.Generation &&
			st.DesiredNumberScheduled == 5 && st.CurrentNumberScheduled == 5 && st.NumberReady == 5 &&
			st.NumberAvailable == 5 && st.NumberUnavailable == 0 && st.UpdatedNumberScheduled == 5 &&
			st.NumberMisscheduled == 0 && st.UpdateRevision != "" && st.CurrentRevision == st.UpdateRevision &&
			meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionAvailable) &&
			meta.IsStatusConditionFalse(st.Conditions, nasv1alpha1.ConditionReconciling), fmt.Sprintf("%+v", st)
	})
	if got := kstatus(t, f.get(set)); got != kstatusv1.CurrentStatus {
		t.Errorf("kstatus once converged = %s, want Current", got)
	}
	if rev := f.get(set).Status.UpdateRevision; rev != set.Name+"-"+f.pods(set)[0].Labels[nasv1alpha1.LabelRevisionHash] {
		t.Errorf("updateRevision %q does not name the pods' revision", rev)
	}
}

// kstatus is what generic tooling (kstatus, hence Flux, Argo CD, kpt)
// makes of the set without knowing its kind.
func kstatus(t *testing.T, set *nasv1alpha1.NodeAgentSet) kstatusv1.Status {
	t.Helper()
	return testkstatus.Of(t, set)
}

func tolerates(tols []corev1.Toleration, key string, effect corev1.TaintEffect) bool {
	for _, t := range tols {
		if t.Key == key && t.Effect == effect && t.Operator == corev1.TolerationOpExists && t.TolerationSeconds == nil {
			return true
		}
	}
	return false
}

func TestFollowsNodeLabels(t *testing.T) {
	f := newFixture(t, "relabel")
	nodes := f.nodes(3)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))

	f.patchNode(nodes[1], func(n *corev1.Node) { delete(n.Labels, f.label) })
	eventually(t, "pod removed from relabelled node", f.onePerNode(set, []string{nodes[0], nodes[2]}))

	f.patchNode(nodes[1], func(n *corev1.Node) { n.Labels = map[string]string{f.label: "true"} })
	eventually(t, "pod back on relabelled node", f.onePerNode(set, nodes))
}

func TestTaintsNoScheduleKeepsNoExecuteEvicts(t *testing.T) {
	f := newFixture(t, "taints")
	nodes := f.nodes(3)
	tainted := f.nodes(1, func(n *corev1.Node) {
		n.Name = "taints-pretainted"
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	})
	set := f.set()
	eventually(t, "no pod on the NoSchedule-tainted node", f.onePerNode(set, nodes))

	f.patchNode(nodes[0], func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	})
	holds(t, time.Second, "running pod stays on a node tainted NoSchedule", f.onePerNode(set, nodes))
	eventually(t, "NoSchedule node with a pod counted misscheduled", func() (bool, string) {
		st := f.get(set).Status
		return st.DesiredNumberScheduled == 2 && st.NumberMisscheduled == 1, fmt.Sprintf("%+v", st)
	})

	f.patchNode(nodes[1], func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoExecute}}
	})
	eventually(t, "pod evicted by NoExecute", f.onePerNode(set, []string{nodes[0], nodes[2]}))

	// Tolerating the taint brings the agent to the pre-tainted node.
	f.update(set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
	})
	eventually(t, "pods on every node once the taint is tolerated", func() (bool, string) {
		got := byNode(f.pods(set))
		return len(got[tainted[0]]) == 1 && len(got[nodes[1]]) == 1, describe(got)
	})
}

func TestFollowsNodesAddedAndDeleted(t *testing.T) {
	f := newFixture(t, "churn")
	nodes := f.nodes(2)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))

	added := f.nodes(1, func(n *corev1.Node) { n.Name = "churn-added" })
	eventually(t, "pod on the added node", f.onePerNode(set, append(nodes, added...)))

	if err := k8s.Delete(f.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodes[0]}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod of the deleted node gone", f.onePerNode(set, []string{nodes[1], added[0]}))
}

func TestRecreatesPodDeletedByHand(t *testing.T) {
	f := newFixture(t, "recreate")
	nodes := f.nodes(2)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	victim := byNode(f.pods(set))[nodes[0]][0]
	if err := k8s.Delete(f.ctx, &victim); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new pod on the node", func() (bool, string) {
		got := byNode(f.pods(set))[nodes[0]]
		return len(got) == 1 && got[0].UID != victim.UID, fmt.Sprintf("%v", podNames(got))
	})
}

func TestRemovesExtraPodKeepingTheOldest(t *testing.T) {
	f := newFixture(t, "extra")
	nodes := f.nodes(1)
	set := f.set()
	eventually(t, "one pod", f.onePerNode(set, nodes))
	oldest := f.pods(set)[0]

	extra := oldest.DeepCopy()
	extra.ObjectMeta = metav1.ObjectMeta{
		GenerateName: "extra-", Namespace: f.ns, Labels: oldest.Labels, OwnerReferences: oldest.OwnerReferences,
	}
	extra.Status = corev1.PodStatus{}
	time.Sleep(1100 * time.Millisecond) // creation timestamps have second precision
	f.create(extra)
	eventually(t, "only the oldest pod left", func() (bool, string) {
		pods := f.pods(set)
		return len(pods) == 1 && pods[0].UID == oldest.UID, fmt.Sprintf("%v", podNames(pods))
	})
}

// A failed agent is replaced, and an agent that keeps failing is replaced
// ever more slowly: each wait is at least the backoff, which doubles from 1s.
func TestReplacesFailedPodsWithBackoff(t *testing.T) {
	f := newFixture(t, "failed")
	nodes := f.nodes(1)
	set := f.set()
	eventually(t, "one pod", f.onePerNode(set, nodes))

	var gaps []time.Duration
	for range 4 {
		pod := f.pods(set)[0]
		failedAt := time.Now()
		f.setPhase(&pod, corev1.PodFailed, corev1.ConditionFalse)
		eventually(t, "failed pod replaced", func() (bool, string) {
			pods := f.pods(set)
			return len(pods) == 1 && pods[0].UID != pod.UID, fmt.Sprintf("%v", podNames(pods))
		})
		gaps = append(gaps, time.Since(failedAt))
	}
	t.Logf("failure-to-replacement times: %v", gaps)
	// First failure: no backoff yet. Later ones wait out 1s, 2s, 4s, less
	// the time the test itself took between replacement and next failure.
	if gaps[2] < 1500*time.Millisecond || gaps[3] < 3*time.Second {
		t.Errorf("replacements of a repeatedly failing agent came too fast: %v", gaps)
	}
}

func TestAdoptsOrphansAndReleasesNonMatchingPods(t *testing.T) {
	f := newFixture(t, "adopt")
	nodes := f.nodes(2)
	template := f.newSet()
	// An orphan agent left behind (say by deleting a set with
	// --cascade=orphan), pinned to nodes[0].
	orphan := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: f.ns, Labels: map[string]string{
			"app": "adopt", nasv1alpha1.LabelSetName: "agent", nasv1alpha1.LabelRevisionHash: "old",
		}},
		Spec: *template.Spec.Template.Spec.DeepCopy(),
	}
	orphan.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{nodes[0]}}},
		}}},
	}}
	f.create(orphan)
	// OnDelete, so the adopted pod of an old revision is not rolled away.
	set := f.newSet()
	set.Spec.UpdateStrategy.Type = nasv1alpha1.OnDeleteStrategy
	f.create(set)
	eventually(t, "orphan adopted and no second pod on its node", func() (bool, string) {
		got := byNode(f.pods(set))
		ok := len(got[nodes[0]]) == 1 && got[nodes[0]][0].Name == "orphan" && len(got[nodes[1]]) == 1
		if ok {
			ref := metav1.GetControllerOf(&got[nodes[0]][0])
			ok = ref != nil && ref.UID == f.get(set).UID
		}
		return ok, describe(got)
	})

	// Changing the pod's labels so the selector no longer matches releases it.
	pod := &corev1.Pod{}
	if err := k8s.Get(f.ctx, client.ObjectKey{Namespace: f.ns, Name: "orphan"}, pod); err != nil {
		t.Fatal(err)
	}
	before := pod.DeepCopy()
	pod.Labels["app"] = "debugging"
	if err := k8s.Patch(f.ctx, pod, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod released and replaced", func() (bool, string) {
		released := &corev1.Pod{}
		if err := k8s.Get(f.ctx, client.ObjectKey{Namespace: f.ns, Name: "orphan"}, released); err != nil {
			return false, err.Error()
		}
		owned := 0
		for _, p := range byNode(f.pods(set))[nodes[0]] {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == f.get(set).UID {
				owned++
			}
		}
		return metav1.GetControllerOf(released) == nil && owned == 1,
			fmt.Sprintf("released pod owner %v, owned pods on node %d", metav1.GetControllerOf(released), owned)
	})
}
