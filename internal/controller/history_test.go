package controller_test

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

func (f *fixture) revisions(set *nasv1alpha1.NodeAgentSet) map[string]int64 {
	f.t.Helper()
	var list appsv1.ControllerRevisionList
	if err := k8s.List(f.ctx, &list, client.InNamespace(set.Namespace),
		client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, cr := range list.Items {
		out[cr.Name] = cr.Revision
	}
	return out
}

// History keeps revisionHistoryLimit old revisions beyond the live ones: a
// revision some pod still runs is never pruned, however old.
func TestHistoryPruningKeepsLiveRevisions(t *testing.T) {
	f := newFixture(t, "history")
	nodes := f.nodes(2)
	set := f.newSet()
	set.Spec.RevisionHistoryLimit = ptr.To[int32](1)
	// OnDelete keeps the first pods on the first revision throughout.
	set.Spec.UpdateStrategy.Type = nasv1alpha1.OnDeleteStrategy
	f.create(set)
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	first := f.get(set).Status.UpdateRevision

	for i := 2; i <= 5; i++ {
		f.update(set, image(fmt.Sprintf("registry.example/agent:%d", i)))
		eventually(t, "the new revision observed", func() (bool, string) {
			got := f.get(set)
			return got.Status.ObservedGeneration == got.Generation, ""
		})
	}
	update := f.get(set).Status.UpdateRevision
	eventually(t, "history pruned to the live revision, the update revision and one more", func() (bool, string) {
		revs := f.revisions(set)
		_, hasFirst := revs[first]
		_, hasUpdate := revs[update]
		return len(revs) == 3 && hasFirst && hasUpdate, fmt.Sprintf("%v", revs)
	})
	// Rolling back to the first template re-uses its revision, renumbered
	// as the newest.
	f.update(set, image("registry.example/agent:1"))
	eventually(t, "the first revision re-used", func() (bool, string) {
		got := f.get(set)
		revs := f.revisions(set)
		newest := int64(0)
		for _, n := range revs {
			newest = max(newest, n)
		}
		return got.Status.UpdateRevision == first && revs[first] == newest, fmt.Sprintf("update %s, revisions %v", got.Status.UpdateRevision, revs)
	})
}

func image(img string) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.Containers[0].Image = img }
}

// minReadySeconds: a Ready pod counts as available only after that long,
// and the controller wakes up at that moment by itself (no pod event comes).
func TestMinReadySecondsDelaysAvailability(t *testing.T) {
	f := newFixture(t, "minready")
	nodes := f.nodes(2)
	set := f.newSet()
	set.Spec.MinReadySeconds = 3
	f.create(set)
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	// Condition times have second precision: Ready counts from the
	// truncated second.
	readyAt := time.Now().Truncate(time.Second)
	f.markAllReady(set)
	eventually(t, "pods Ready but not yet available", func() (bool, string) {
		st := f.get(set).Status
		return st.NumberReady == 2 && st.NumberAvailable == 0, fmt.Sprintf("%+v", st)
	})
	eventually(t, "pods available after minReadySeconds", func() (bool, string) {
		st := f.get(set).Status
		return st.NumberAvailable == 2, fmt.Sprintf("%+v", st)
	})
	if waited := time.Since(readyAt); waited < 3*time.Second {
		t.Errorf("pods counted available %v after Ready; minReadySeconds is 3s", waited)
	}
}
