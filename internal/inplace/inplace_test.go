package inplace

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
)

func tmpl(image string, labels map[string]string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: image}}},
	}
}

func TestCompareTellsImagesFromOtherChanges(t *testing.T) {
	a := tmpl("agent:1", map[string]string{"app": "a"})
	cpu := tmpl("agent:1", map[string]string{"app": "a"})
	cpu.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	for _, tc := range []struct {
		name string
		to   *corev1.PodTemplateSpec
		want Change
	}{
		{"same", tmpl("agent:1", map[string]string{"app": "a"}), Relabel},
		{"label only", tmpl("agent:1", map[string]string{"app": "a", "x": "y"}), Relabel},
		{"image", tmpl("agent:2", map[string]string{"app": "a"}), Images},
		{"image and label", tmpl("agent:2", map[string]string{"app": "a", "x": "y"}), Images},
		{"resources", cpu, Recreate},
	} {
		if got := Compare(a, tc.to); got != tc.want {
			t.Errorf("%s: Compare = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAllowedFollowsPolicyAndGate(t *testing.T) {
	a, img, lbl := tmpl("a:1", nil), tmpl("a:2", nil), tmpl("a:1", map[string]string{"x": "y"})
	gated := &corev1.Pod{Spec: corev1.PodSpec{ReadinessGates: []corev1.PodReadinessGate{{ConditionType: nasv1alpha1.ReadinessGateInPlace}}}}
	bare := &corev1.Pod{}
	if !Allowed(Relabel, a, a, false, bare) {
		t.Error("an unchanged pod must be relabelled whatever the policy")
	}
	if Allowed(Relabel, a, lbl, false, bare) {
		t.Error("a Recreate set must recreate on a template label change")
	}
	if Allowed(Images, a, img, true, bare) {
		t.Error("a pod without the readiness gate must be recreated")
	}
	if !Allowed(Images, a, img, true, gated) || Allowed(Images, a, img, false, gated) {
		t.Error("images change in place only under InPlaceIfPossible")
	}
}

func TestPatchChangesImagesLabelsAndKeepsOthers(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "u"}}
	from := tmpl("a:1", map[string]string{"app": "a", "old": "1"})
	to := tmpl("a:2", map[string]string{"app": "a", "new": "1"})
	b, err := Patch(pod, from, to, "h2")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	meta := got["metadata"].(map[string]any)
	labels := meta["labels"].(map[string]any)
	if meta["uid"] != "u" || labels["controller-revision-hash"] != "h2" || labels["new"] != "1" ||
		labels["old"] != nil || len(labels) != 4 {
		t.Errorf("metadata patch = %v", meta)
	}
	if _, ok := labels["old"]; !ok {
		t.Error("a label the old template had must be removed (null)")
	}
	c := got["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if c["name"] != "agent" || c["image"] != "a:2" {
		t.Errorf("containers patch = %v", c)
	}
}

func TestShouldOpen(t *testing.T) {
	gate := []corev1.PodReadinessGate{{ConditionType: nasv1alpha1.ReadinessGateInPlace}}
	pod := func(cond corev1.ConditionStatus, statusImage string) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{ReadinessGates: gate, Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}}
		if cond != "" {
			p.Status.Conditions = []corev1.PodCondition{{Type: nasv1alpha1.ReadinessGateInPlace, Status: cond}}
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Image: statusImage, Ready: true}}
		return p
	}
	if !ShouldOpen(pod("", "old")) {
		t.Error("a new pod's gate must be opened")
	}
	if ShouldOpen(pod(corev1.ConditionFalse, "old")) {
		t.Error("a pod still on its old image must stay closed")
	}
	if !ShouldOpen(pod(corev1.ConditionFalse, "docker.io/library/nginx:latest")) {
		t.Error("a pod running the new image (fully qualified by the runtime) must be opened")
	}
	if ShouldOpen(pod(corev1.ConditionTrue, "nginx")) || ShouldOpen(&corev1.Pod{}) {
		t.Error("open gates and pods without the gate are left alone")
	}
}

func TestConvertTurnsAReplacementIntoOnePatch(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{Spec: nasv1alpha1.NodeAgentSetSpec{UpdateStrategy: nasv1alpha1.UpdateStrategy{
		RollingUpdate: &nasv1alpha1.RollingUpdate{PodUpdatePolicy: nasv1alpha1.InPlaceIfPossiblePodUpdate}}}}
	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "old", Labels: map[string]string{nasv1alpha1.LabelRevisionHash: "h1"}},
		Spec: corev1.PodSpec{ReadinessGates: []corev1.PodReadinessGate{{ConditionType: nasv1alpha1.ReadinessGateInPlace}}}}
	templates := func(hash, _ string) (*corev1.PodTemplateSpec, bool) {
		return tmpl(map[string]string{"h1": "a:1", "h2": "a:2"}[hash], nil), true
	}
	p := plan.Plan{
		Nodes:   []plan.NodeState{{Name: "n1", Old: old, Active: []*corev1.Pod{old}}},
		Deletes: []plan.Delete{{Pod: old, Node: "n1"}},
		Creates: []plan.Create{{Node: "n1", Reason: "rolling update"}},
	}
	Convert(&p, set, "h2", templates)
	if len(p.Deletes) != 0 || len(p.Creates) != 0 || len(p.Updates) != 1 || !p.Updates[0].Restart {
		t.Fatalf("plan = %+v", p)
	}
	// The same under Recreate: left as a delete and a create.
	set.Spec.UpdateStrategy.RollingUpdate.PodUpdatePolicy = nasv1alpha1.RecreatePodUpdate
	p = plan.Plan{Nodes: p.Nodes, Deletes: []plan.Delete{{Pod: old, Node: "n1"}}, Creates: []plan.Create{{Node: "n1"}}}
	Convert(&p, set, "h2", templates)
	if len(p.Deletes) != 1 || len(p.Creates) != 1 || len(p.Updates) != 0 {
		t.Fatalf("Recreate plan = %+v", p)
	}
	// A surge on a node whose pod would not change: relabelled, no surge.
	p = plan.Plan{Nodes: p.Nodes, Creates: []plan.Create{{Node: "n1", Reason: "surge"}}}
	Convert(&p, set, "h1b", func(hash, n string) (*corev1.PodTemplateSpec, bool) { return tmpl("a:1", nil), true })
	if len(p.Creates) != 0 || len(p.Updates) != 1 || p.Updates[0].Restart {
		t.Fatalf("surge relabel plan = %+v", p)
	}
}

func TestConvertKeepsTheGateOfAPodItPatchesAgainClosed(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{Spec: nasv1alpha1.NodeAgentSetSpec{UpdateStrategy: nasv1alpha1.UpdateStrategy{
		RollingUpdate: &nasv1alpha1.RollingUpdate{PodUpdatePolicy: nasv1alpha1.InPlaceIfPossiblePodUpdate}}}}
	gate := []corev1.PodReadinessGate{{ConditionType: nasv1alpha1.ReadinessGateInPlace}}
	// Updated in place to a:2 (its containers run it), gate not opened yet,
	// when revision h3 (a:3) came: the executor opens gates beside its
	// patches, so opening this one would open it on a restarting pod.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{nasv1alpha1.LabelRevisionHash: "h2"}},
		Spec:       corev1.PodSpec{ReadinessGates: gate, Containers: []corev1.Container{{Name: "agent", Image: "a:2"}}},
		Status: corev1.PodStatus{
			Conditions:        []corev1.PodCondition{{Type: nasv1alpha1.ReadinessGateInPlace, Status: corev1.ConditionFalse}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", Image: "a:2", Ready: true}},
		},
	}
	other := pod.DeepCopy()
	other.Name = "other"
	templates := func(hash, _ string) (*corev1.PodTemplateSpec, bool) {
		return tmpl(map[string]string{"h2": "a:2", "h3": "a:3"}[hash], nil), true
	}
	p := plan.Plan{
		Nodes: []plan.NodeState{
			{Name: "n1", Old: pod, Active: []*corev1.Pod{pod}},
			{Name: "n2", Active: []*corev1.Pod{other}},
		},
		Deletes: []plan.Delete{{Pod: pod, Node: "n1"}},
		Creates: []plan.Create{{Node: "n1"}},
	}
	Convert(&p, set, "h3", templates)
	if len(p.Updates) != 1 || p.Updates[0].Pod != pod {
		t.Fatalf("updates = %+v", p.Updates)
	}
	if len(p.OpenGates) != 1 || p.OpenGates[0] != other {
		t.Errorf("gates to open = %v, want only the other pod's", p.OpenGates)
	}
}

// While a staged rollout's check has failed, the plan replaces agents of
// the update revision with agents of the current one (Create.Revision):
// the conversion moves the pod to that revision, or leaves the replacement
// alone; it never patches the pod to the revision it is already on (which
// stood for the replacement, so an abort never put the node back).
func TestConvertMovesToTheCreatesRevision(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{Spec: nasv1alpha1.NodeAgentSetSpec{UpdateStrategy: nasv1alpha1.UpdateStrategy{
		RollingUpdate: &nasv1alpha1.RollingUpdate{PodUpdatePolicy: nasv1alpha1.RecreatePodUpdate}}}}
	broken := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "broken", Labels: map[string]string{nasv1alpha1.LabelRevisionHash: "h2"}},
		Spec: corev1.PodSpec{ReadinessGates: []corev1.PodReadinessGate{{ConditionType: nasv1alpha1.ReadinessGateInPlace}}}}
	templates := func(hash, _ string) (*corev1.PodTemplateSpec, bool) {
		return tmpl(map[string]string{"h1": "a:1", "h2": "a:2"}[hash], nil), true
	}
	abort := func() plan.Plan {
		return plan.Plan{
			Nodes:   []plan.NodeState{{Name: "n1", Old: broken, Active: []*corev1.Pod{broken}}},
			Deletes: []plan.Delete{{Pod: broken, Node: "n1"}},
			Creates: []plan.Create{{Node: "n1", Reason: "abort", Revision: "h1"}},
		}
	}
	p := abort()
	Convert(&p, set, "h2", templates)
	if len(p.Deletes) != 1 || len(p.Creates) != 1 || len(p.Updates) != 0 {
		t.Fatalf("Recreate: %d deletes, creates %+v, updates %+v; want the delete and the create of h1 kept", len(p.Deletes), p.Creates, p.Updates)
	}
	set.Spec.UpdateStrategy.RollingUpdate.PodUpdatePolicy = nasv1alpha1.InPlaceIfPossiblePodUpdate
	p = abort()
	Convert(&p, set, "h2", templates)
	if len(p.Updates) != 1 || !strings.Contains(string(p.Updates[0].Patch), `"a:1"`) || !strings.Contains(string(p.Updates[0].Patch), `"h1"`) {
		t.Fatalf("InPlaceIfPossible: creates %+v, updates %+v; want one patch back to h1 and image a:1", p.Creates, p.Updates)
	}
}

// kubectl rollout restart stamps a template annotation; relabelling the
// running pods would restart nothing, so it recreates them.
func TestRestartIsNeverARelabel(t *testing.T) {
	from, to := tmpl("a:1", map[string]string{"app": "a"}), tmpl("a:1", map[string]string{"app": "a"})
	to.Annotations = map[string]string{AnnotationRestartedAt: "2026-12-03T15:00:00Z"}
	if c := Compare(from, to); c != Recreate {
		t.Errorf("Compare = %s, want Recreate", c)
	}
}

// The patch leaves the restart count the kubelet reaches after restarting
// the changed containers, from which health checks count.
func TestPatchRecordsTheRestartBaseline(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "u"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", RestartCount: 2}}}}
	b, err := Patch(pod, tmpl("a:1", nil), tmpl("a:2", nil), "h2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"nodeagentset.io/restarts-at-update":"3"`) {
		t.Errorf("patch %s does not record 3 restarts (2 before, 1 for the new image)", b)
	}
}
