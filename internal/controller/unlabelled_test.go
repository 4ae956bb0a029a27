package controller_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// A pod the selector matches but without the set-name label (a bare pod,
// a DaemonSet's pod left by --cascade=orphan) is adopted like DaemonSet
// adopts it, and no second agent is placed beside it; an owned pod whose
// label someone removes is not lost from sight either.
func TestUnlabelledPodsAreClaimedNotDoubled(t *testing.T) {
	f := newFixture(t, "unlabelled")
	nodes := f.nodes(2)
	template := f.newSet()
	bare := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: f.ns, Labels: map[string]string{"app": "unlabelled"}},
		Spec:       *template.Spec.Template.Spec.DeepCopy(),
	}
	bare.Spec.Affinity = pinnedTo(nodes[0])
	f.create(bare)
	set := f.newSet()
	set.Spec.UpdateStrategy.Type = nasv1alpha1.OnDeleteStrategy
	f.create(set)
	eventually(t, "the bare pod adopted and labelled, one pod per node", func() (bool, string) {
		got := byNode(f.pods(set))
		ok := len(got[nodes[0]]) == 1 && got[nodes[0]][0].Name == "bare" && len(got[nodes[1]]) == 1
		if ok {
			ref := metav1.GetControllerOf(&got[nodes[0]][0])
			ok = ref != nil && ref.UID == f.get(set).UID
		}
		return ok, describe(got) + "; " + f.allPodsIn()
	})

	// Watch every create in the namespace from here on.
	var list corev1.PodList
	if err := k8s.List(f.ctx, &list, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	w, err := k8s.Watch(f.ctx, &corev1.PodList{}, client.InNamespace(f.ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	owned := byNode(f.pods(set))[nodes[1]][0]
	if err := k8s.Patch(f.ctx, &owned, client.RawPatch(types.MergePatchType,
		fmt.Appendf(nil, `{"metadata":{"labels":{%q:null}}}`, nasv1alpha1.LabelSetName))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the label back on the owned pod", func() (bool, string) {
		got := &corev1.Pod{}
		if err := k8s.Get(f.ctx, client.ObjectKeyFromObject(&owned), got); err != nil {
			return false, err.Error()
		}
		return got.Labels[nasv1alpha1.LabelSetName] == set.Name, fmt.Sprintf("labels %v", got.Labels)
	})
	deadline := time.After(2 * time.Second)
	for {
		select {
		case ev := <-w.ResultChan():
			if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				t.Fatalf("pod %s created on %v after the label was removed from %s", pod.Name, pod.Spec.Affinity, owned.Name)
			}
		case <-deadline:
			return
		}
	}
}

func pinnedTo(node string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}}},
	}}
}

// allPodsIn describes every pod of the fixture's namespace, labelled or not.
func (f *fixture) allPodsIn() string {
	var list corev1.PodList
	if err := k8s.List(f.ctx, &list, client.InNamespace(f.ns)); err != nil {
		return err.Error()
	}
	out := ""
	for _, p := range list.Items {
		out += fmt.Sprintf("%s labels=%v owners=%d; ", p.Name, p.Labels, len(p.OwnerReferences))
	}
	return out
}

// The metadata watch of a namespace's pods runs while the namespace holds a
// set, and stops with its last set: nothing is kept of a namespace that
// no longer needs it.
func TestPodWatchOfANamespaceStopsWithItsLastSet(t *testing.T) {
	f := newFixture(t, "nswatch")
	f.nodes(1)
	set := f.set()
	eventually(t, "the namespace's pods watched", func() (bool, string) {
		return reconciler.WatchesPodsOf(f.ns), "not watched"
	})
	if err := k8s.Delete(f.ctx, set); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watch stopped with the last set", func() (bool, string) {
		return !reconciler.WatchesPodsOf(f.ns), "still watched"
	})
}
