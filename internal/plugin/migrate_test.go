package plugin

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// migrationFixture is a converged DaemonSet of three agents, revision
// "new" (an older revision "old" in its history), ready to assess.
func migrationFixture(t *testing.T) *migrationInput {
	t.Helper()
	labels := map[string]string{"app": "agent"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: "ds-uid", Generation: 2},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent:1",
					Ports: []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100}}}}},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
		},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3},
	}
	ds.Kind, ds.APIVersion = "DaemonSet", "apps/v1"
	first, err := firstSet(ds, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := &migrationInput{DS: ds, First: first, Backup: "ds.yaml", Manifest: "nas.yaml",
		Revisions: []appsv1.ControllerRevision{dsRevision(ds, "old", 1), dsRevision(ds, "new", 2)}}
	for _, node := range []string{"a", "b", "c"} {
		in.Pods = append(in.Pods, dsPod(ds, node, "new"))
	}
	return in
}

func dsRevision(ds *appsv1.DaemonSet, hash string, number int64) appsv1.ControllerRevision {
	return appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: ds.Name + "-" + hash, Namespace: ds.Namespace,
			Labels:          map[string]string{appsv1.DefaultDaemonSetUniqueLabelKey: hash},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))}},
		Revision: number,
	}
}

func dsPod(ds *appsv1.DaemonSet, node, hash string) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-" + node, Namespace: ds.Namespace, UID: types.UID("pod-" + node),
			Labels:          map[string]string{"app": "agent", appsv1.DefaultDaemonSetUniqueLabelKey: hash},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))}},
		Spec: corev1.PodSpec{NodeName: node},
	}
}

// The pods of the DaemonSet's newest revision are the ones relabelled:
// they run exactly the template the set's first revision holds.
func TestMigrationRelabelsThePodsOfTheDaemonSetsCurrentRevision(t *testing.T) {
	in := migrationFixture(t)
	m, err := assess(in)
	if err != nil {
		t.Fatal(err)
	}
	if m.dsHash != "new" || len(m.current) != 3 || len(m.older) != 0 || len(m.dsRevisions) != 2 {
		t.Fatalf("dsHash %q, %d current, %d older, %d revisions; want new, 3, 0, 2", m.dsHash, len(m.current), len(m.older), len(m.dsRevisions))
	}
	relabel := strings.Join(m.steps[2].manual, "\n")
	if !strings.Contains(relabel, "-l 'app=agent,controller-revision-hash=new' controller-revision-hash="+m.hash+" --overwrite") {
		t.Errorf("the relabel step does not select the current revision's pods:\n%s", relabel)
	}
	if !in.First.Spec.UpdateStrategy.RollingUpdate.Paused {
		t.Error("the set is not created paused")
	}
	if m.rolls {
		t.Error("without -f the set must not roll")
	}
}

func TestMigrationRefusals(t *testing.T) {
	other := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "other", UID: "other-uid"}}
	for _, tc := range []struct {
		name   string
		change func(*migrationInput)
		want   string
	}{
		{"the DaemonSet is rolling out", func(in *migrationInput) {
			in.DS.Status.UpdatedNumberScheduled = 2
			in.Pods[0] = dsPod(in.DS, "a", "old")
		}, "is rolling out (2 of 3 nodes updated)"},
		{"its controller has not seen the spec", func(in *migrationInput) { in.DS.Status.ObservedGeneration = 1 }, "has not acted on the latest spec"},
		{"an older agent under RollingUpdate", func(in *migrationInput) { in.Pods[0] = dsPod(in.DS, "a", "old") }, "run an older template"},
		{"the set exists", func(in *migrationInput) { in.SetExists = true }, "already exists"},
		{"an orphan the set would adopt", func(in *migrationInput) {
			stray := dsPod(in.DS, "d", "x")
			stray.Name, stray.OwnerReferences = "by-hand", nil
			in.Pods = append(in.Pods, stray)
		}, "pods by-hand match the DaemonSet's selector but belong to no controller"},
		{"no history", func(in *migrationInput) { in.Revisions = []appsv1.ControllerRevision{dsRevision(other, "z", 9)} }, "has no ControllerRevision"},
		{"the revision name is taken", func(in *migrationInput) {
			in.Taken = &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "agent-x"}, Data: runtime.RawExtension{Raw: []byte(`{}`)}}
		}, "already exists and holds another template"},
		{"-f with another selector", func(in *migrationInput) {
			in.Target = target(in, func(s *nasv1alpha1.NodeAgentSet) {
				s.Spec.Selector.MatchLabels["tier"] = "node"
			})
		}, `spec.selector "app=agent,tier=node" is not the DaemonSet's "app=agent"`},
		{"-f with another name", func(in *migrationInput) {
			in.Target = target(in, func(s *nasv1alpha1.NodeAgentSet) { s.Name = "renamed" })
		}, "must be named agent in namespace ns"},
		{"-f surging a new template on host ports", func(in *migrationInput) {
			in.Target = target(in, func(s *nasv1alpha1.NodeAgentSet) {
				s.Spec.Template.Spec.Containers[0].Image = "agent:2"
				s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxSurge: ptr.To(intstr.FromInt32(1))}
			})
		}, "maxSurge with host ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := migrationFixture(t)
			tc.change(in)
			if _, err := assess(in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// target is the converted DaemonSet as -f would give it, changed.
func target(in *migrationInput, change func(*nasv1alpha1.NodeAgentSet)) *nasv1alpha1.NodeAgentSet {
	s := fresh(in.First)
	s.Spec.UpdateStrategy.RollingUpdate.Paused = false
	change(s)
	return s
}

// An OnDelete DaemonSet keeps agents of older revisions for ever: they are
// adopted as they are (an older revision), not relabelled.
func TestMigrationAdoptsOnDeleteLeftoversAsAnOlderRevision(t *testing.T) {
	in := migrationFixture(t)
	in.DS.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	in.DS.Status.UpdatedNumberScheduled = 2
	in.Pods[0] = dsPod(in.DS, "a", "old")
	m, err := assess(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.current) != 2 || len(m.older) != 1 || !strings.Contains(strings.Join(m.notes, "\n"), "1 agents run older templates") {
		t.Fatalf("%d current, %d older, notes %q", len(m.current), len(m.older), m.notes)
	}
}

// A -f whose template differs ends in a rolling update; one with the
// DaemonSet's template restarts nothing.
func TestMigrationWithATargetRollsOnlyWhenItsTemplateDiffers(t *testing.T) {
	for _, tc := range []struct {
		image string
		rolls bool
		// nodeOverrides are part of the revision: they roll too, but
		// only once the takeover is done (the first set has none), and
		// suspend likewise waits for the takeover.
		overrides bool
	}{{"agent:1", false, false}, {"agent:2", true, false}, {"agent:1", true, true}} {
		in := migrationFixture(t)
		in.Target, in.TargetFile = target(in, func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Template.Spec.Containers[0].Image = tc.image
			s.Spec.MinReadySeconds = 7
			s.Spec.Suspend = tc.overrides
			if tc.overrides {
				s.Spec.NodeOverrides = []nasv1alpha1.NodeOverride{{Containers: []nasv1alpha1.ContainerOverride{{Name: "agent",
					Resources: &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}}
			}
		}), "agent.yaml"
		first, err := firstSet(in.DS, in.Target)
		if err != nil {
			t.Fatal(err)
		}
		in.First = first
		m, err := assess(in)
		if err != nil {
			t.Fatal(err)
		}
		last := m.steps[len(m.steps)-1]
		if m.rolls != tc.rolls || strings.Contains(last.title, "rolling update") != tc.rolls {
			t.Errorf("image %s: rolls %v, last step %q", tc.image, m.rolls, last.title)
		}
		if first.Spec.NodeOverrides != nil || first.Spec.Suspend {
			t.Errorf("the first set must take the agents over as they run, without overrides or suspend: %+v", first.Spec)
		}
		if first.Spec.Template.Spec.Containers[0].Image != "agent:1" || first.Spec.MinReadySeconds != 7 {
			t.Errorf("the first set must hold the DaemonSet's template and the rest of -f's spec: %+v", first.Spec)
		}
	}
}

// A failed step says which state the cluster is in, what is left to do
// by hand, and how to go back to the DaemonSet.
func TestFailedStepSaysTheStateAndBothWaysOut(t *testing.T) {
	m, err := assess(migrationFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = m.failed(&out, 2, errors.New("forbidden"))
	if err == nil || !strings.Contains(err.Error(), "stopped at step 3: forbidden") {
		t.Fatalf("error %v", err)
	}
	report := out.String()
	for _, want := range []string{
		"The cluster is as after step 2: The DaemonSet is deleted; its agents run on, owned by no controller",
		"To continue, run these",
		"kubectl label pods -n ns -l 'app=agent,controller-revision-hash=new'",
		"kubectl create -f nas.yaml",
		"kubectl nodeagentset rollout resume agent -n ns",
		"To go back to the DaemonSet instead:",
		"controller-revision-hash=new nodeagentset.io/name- --overwrite",
		"kubectl create -f ds.yaml",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "kubectl delete daemonset") {
		t.Errorf("the report asks to redo a step already done:\n%s", report)
	}
}

func TestDaemonSetName(t *testing.T) {
	for ref, want := range map[string]string{"daemonset/a": "a", "ds/b": "b", "daemonsets.apps/c": "c", "deployment/d": "", "e": ""} {
		got, err := daemonSetName(ref)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("%s: %q, %v", ref, got, err)
		}
	}
}

// Before the set is resumed, every agent must carry the first revision's
// hash (or an older DaemonSet revision's, under OnDelete): one still
// carrying the DaemonSet's current hash would be replaced on resume.
func TestAdoptionCheckStopsOnAnAgentTheSetWouldReplace(t *testing.T) {
	in := migrationFixture(t)
	in.DS.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	in.Pods[0] = dsPod(in.DS, "a", "old")
	m, err := assess(in)
	if err != nil {
		t.Fatal(err)
	}
	relabelled := dsPod(in.DS, "b", m.hash)
	if err := m.checkHash(&relabelled); err != nil {
		t.Errorf("a relabelled agent: %v", err)
	}
	if err := m.checkHash(&in.Pods[0]); err != nil {
		t.Errorf("an OnDelete leftover: %v", err)
	}
	missed := dsPod(in.DS, "c", "new")
	if err := m.checkHash(&missed); !errors.Is(err, errMismatch) || !strings.Contains(err.Error(), `pod agent-c carries revision hash "new"`) {
		t.Errorf("an agent not relabelled: %v", err)
	}
}

// The adoption check fails when an agent was not labelled: continuing
// must label again before resuming, or the set replaces that agent.
func TestFailedAdoptionLabelsAgainBeforeResuming(t *testing.T) {
	m, err := assess(migrationFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_ = m.failed(&out, int(stepAdopt), errMismatch)
	report := out.String()
	label, resume := strings.Index(report, "kubectl label pods -n ns -l 'app=agent,controller-revision-hash=new'"), strings.Index(report, "rollout resume")
	if label < 0 || resume < label {
		t.Errorf("the report does not label before resuming:\n%s", report)
	}
}
