package plan

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const setUID = types.UID("set-uid")

func testSet() *nasv1alpha1.NodeAgentSet {
	return &nasv1alpha1.NodeAgentSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: setUID},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       corev1.PodSpec{NodeSelector: map[string]string{"agent": "yes"}},
			},
		},
	}
}

func mkNode(name string, eligible bool, taints ...corev1.Taint) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}, Spec: corev1.NodeSpec{Taints: taints}}
	if eligible {
		n.Labels["agent"] = "yes"
	}
	return n
}

type podOpt func(*corev1.Pod)

func mkPod(name, node string, age time.Duration, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "ns", UID: types.UID(name),
			CreationTimestamp: metav1.NewTime(t0.Add(-age)),
			Labels:            map[string]string{"app": "agent", nasv1alpha1.LabelSetName: "agent", nasv1alpha1.LabelRevisionHash: "h1"},
			OwnerReferences:   []metav1.OwnerReference{{UID: setUID, Name: "agent", Kind: "NodeAgentSet", Controller: ptr.To(true)}},
		},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }
func orphan(p *corev1.Pod)            { p.OwnerReferences = nil }
func relabelled(p *corev1.Pod)        { p.Labels["app"] = "other" }
func terminating(p *corev1.Pod)       { p.DeletionTimestamp = ptr.To(metav1.NewTime(t0)) }

func snapshot(nodes []*corev1.Node, pods []*corev1.Pod, backoff map[string]time.Time) Snapshot {
	return Snapshot{
		Set: testSet(), Selector: labels.SelectorFromSet(labels.Set{"app": "agent"}),
		Nodes: nodes, Pods: pods, UpdateHash: "h1", Now: t0, Backoff: backoff,
	}
}

func TestCompute(t *testing.T) {
	noExec := corev1.Taint{Key: "gpu", Effect: corev1.TaintEffectNoExecute}
	noSched := corev1.Taint{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}
	tests := []struct {
		name    string
		nodes   []*corev1.Node
		pods    []*corev1.Pod
		backoff map[string]time.Time
		creates []string // nodes
		deletes []string // pod names
		adopt   []string
		release []string
		reason  string // substring of the first delete's or create's reason
		requeue time.Duration
	}{
		{name: "creates on every eligible node without an agent",
			nodes:   []*corev1.Node{mkNode("a", true), mkNode("b", true), mkNode("c", false)},
			pods:    []*corev1.Pod{mkPod("pa", "a", time.Hour)},
			creates: []string{"b"}, reason: "no agent on an eligible node"},
		{name: "nothing to do when converged",
			nodes: []*corev1.Node{mkNode("a", true)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour)}},
		{name: "removes the agent from a node that lost its label",
			nodes: []*corev1.Node{mkNode("a", false)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour)},
			deletes: []string{"pa"}, reason: "node no longer eligible: nodeSelector agent=yes does not match"},
		{name: "keeps the agent on a node tainted NoSchedule, places none on a new one",
			nodes: []*corev1.Node{mkNode("a", true, noSched), mkNode("b", true, noSched)},
			pods:  []*corev1.Pod{mkPod("pa", "a", time.Hour)}},
		{name: "evicts the agent from a node tainted NoExecute",
			nodes: []*corev1.Node{mkNode("a", true, noExec)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour)},
			deletes: []string{"pa"}, reason: "taint gpu:NoExecute not tolerated"},
		{name: "deletes at once the pods of a vanished node, terminating ones too",
			nodes:   []*corev1.Node{mkNode("a", true)},
			pods:    []*corev1.Pod{mkPod("pa", "a", time.Hour), mkPod("pgone", "gone", time.Hour), mkPod("pgone2", "gone", time.Hour, terminating)},
			deletes: []string{"pgone", "pgone2"}, reason: "node gone no longer exists"},
		{name: "keeps the oldest of several agents",
			nodes:   []*corev1.Node{mkNode("a", true)},
			pods:    []*corev1.Pod{mkPod("young", "a", time.Minute), mkPod("old", "a", time.Hour), mkPod("mid", "a", 10*time.Minute)},
			deletes: []string{"mid", "young"}, reason: "duplicate agent of the same revision as old"},
		{name: "replaces a failed agent when not in backoff",
			nodes: []*corev1.Node{mkNode("a", true)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour, phase(corev1.PodFailed))},
			deletes: []string{"pa"}, creates: []string{"a"}, reason: "agent pa Failed; replacing it"},
		{name: "replaces a succeeded agent",
			nodes: []*corev1.Node{mkNode("a", true)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour, phase(corev1.PodSucceeded))},
			deletes: []string{"pa"}, creates: []string{"a"}},
		{name: "leaves a failed agent in place during backoff and requeues at its end",
			nodes: []*corev1.Node{mkNode("a", true)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour, phase(corev1.PodFailed))},
			backoff: map[string]time.Time{"a": t0.Add(4 * time.Second)}, requeue: 4 * time.Second},
		{name: "ignores a terminating agent and places a new one",
			nodes: []*corev1.Node{mkNode("a", true)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour, terminating)},
			creates: []string{"a"}},
		{name: "adopts a matching orphan instead of creating",
			nodes: []*corev1.Node{mkNode("a", true)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour, orphan)},
			adopt: []string{"pa"}},
		{name: "releases an owned pod that stopped matching and replaces it",
			nodes: []*corev1.Node{mkNode("a", true)}, pods: []*corev1.Pod{mkPod("pa", "a", time.Hour, relabelled)},
			release: []string{"pa"}, creates: []string{"a"}},
		{name: "ignores pods another controller owns",
			nodes: []*corev1.Node{mkNode("a", true)},
			pods: []*corev1.Pod{mkPod("pa", "a", time.Hour, func(p *corev1.Pod) {
				p.OwnerReferences[0].UID = "someone-else"
			})},
			creates: []string{"a"}},
		{name: "finds an unbound pod's node from its affinity",
			nodes: []*corev1.Node{mkNode("a", true)},
			pods: []*corev1.Pod{mkPod("pa", "", time.Hour, func(p *corev1.Pod) {
				p.Status.Phase = corev1.PodPending
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}},
				}}}
			})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compute(snapshot(tt.nodes, tt.pods, tt.backoff))
			var creates, deletes, adopt, release []string
			var reasons []string
			for _, c := range p.Creates {
				creates = append(creates, c.Node)
				reasons = append(reasons, c.Reason)
			}
			for _, d := range p.Deletes {
				deletes = append(deletes, d.Pod.Name)
				reasons = append([]string{d.Reason}, reasons...)
			}
			for _, a := range p.Adopt {
				adopt = append(adopt, a.Name)
			}
			for _, r := range p.Release {
				release = append(release, r.Name)
			}
			check := func(what string, got, want []string) {
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			check("creates", creates, tt.creates)
			check("deletes", deletes, tt.deletes)
			check("adopt", adopt, tt.adopt)
			check("release", release, tt.release)
			if tt.reason != "" && (len(reasons) == 0 || !strings.Contains(reasons[0], tt.reason)) {
				t.Errorf("reasons %q, want the first to contain %q", reasons, tt.reason)
			}
			if p.RequeueAfter != tt.requeue {
				t.Errorf("RequeueAfter = %v, want %v", p.RequeueAfter, tt.requeue)
			}
		})
	}
}

func TestComputeExplainsEveryNode(t *testing.T) {
	p := Compute(snapshot([]*corev1.Node{mkNode("b", false), mkNode("a", true)}, nil, nil))
	if len(p.Nodes) != 2 || p.Nodes[0].Name != "a" || p.Nodes[1].Name != "b" {
		t.Fatalf("nodes = %+v, want a and b in name order", p.Nodes)
	}
	if !p.Nodes[0].Eligibility.ShouldRun || p.Nodes[1].Eligibility.Reason == "" {
		t.Errorf("eligibility = %+v / %+v", p.Nodes[0].Eligibility, p.Nodes[1].Eligibility)
	}
}
