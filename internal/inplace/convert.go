package inplace

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// Templates gives the template a node's pod is built from under the
// revision with the given hash (node overrides applied); ok is false when
// that revision is not known (pruned, or a pod made by hand).
type Templates func(hash, node string) (t *corev1.PodTemplateSpec, ok bool)

// Convert turns the rollout's replacements in p into in-place updates
// where Compare and Allowed say the pod can stay:
//
//   - a node whose old agent the plan deletes and replaces in the same
//     pass (maxSurge 0, or an old agent that is not Ready) gets a patch of
//     that agent instead: same budget, same nodes, one write instead of
//     two;
//   - a node where the plan surges (a new agent beside the old) is
//     patched instead only when the pod would not change at all (a
//     relabel): surging is the promise that a Ready old agent stays until
//     its replacement is available, which restarting its containers in
//     place would break, so images are not changed in place under surge.
//
// It also lists the pods whose in-place readiness gate is to be opened,
// but for those it patches.
func Convert(p *plan.Plan, set *nasv1alpha1.NodeAgentSet, updateHash string, templates Templates) {
	inPlace := podtemplate.UpdatesInPlace(set)
	creates := map[string]int{}
	for i, c := range p.Creates {
		creates[c.Node] = i
	}
	deletes := map[*corev1.Pod]int{}
	for i, d := range p.Deletes {
		deletes[d.Pod] = i
	}
	dropCreate, dropDelete := map[int]bool{}, map[int]bool{}
	updated := map[*corev1.Pod]bool{}
	for i := range p.Nodes {
		st := &p.Nodes[i]
		ci, creating := creates[st.Name]
		if st.Old == nil || !creating {
			continue
		}
		di, deleting := deletes[st.Old]
		// The create's revision is the one the node moves to: the current
		// revision, not the update revision, while a staged rollout's check
		// has failed and an abort puts updated nodes back. A pod already on
		// it needs no patch (patching it to itself would stand for the
		// replacement, and the abort would never happen).
		target := cmp.Or(p.Creates[ci].Revision, updateHash)
		if podtemplate.Hash(st.Old) == target {
			continue
		}
		u, ok := update(st.Old, st.Name, target, templates, inPlace)
		if !ok || (!deleting && u.Restart) {
			continue
		}
		u.Reason = p.Creates[ci].Reason
		p.Updates = append(p.Updates, u)
		updated[st.Old] = true
		dropCreate[ci] = true
		if deleting {
			dropDelete[di] = true
		}
	}
	p.Creates = without(p.Creates, dropCreate)
	p.Deletes = without(p.Deletes, dropDelete)
	// The executor opens gates beside the patches; a pod patched again
	// before its gate was opened (a newer revision came) stays closed.
	for i := range p.Nodes {
		for _, pod := range p.Nodes[i].Active {
			if ShouldOpen(pod) && !updated[pod] {
				p.OpenGates = append(p.OpenGates, pod)
			}
		}
	}
}

// update is the in-place update of pod to the update revision, if it may
// have one.
func update(pod *corev1.Pod, node, updateHash string, templates Templates, inPlace bool) (plan.Update, bool) {
	from, okFrom := templates(podtemplate.Hash(pod), node)
	to, okTo := templates(updateHash, node)
	if !okFrom || !okTo {
		return plan.Update{}, false
	}
	change := Compare(from, to)
	if !Allowed(change, from, to, inPlace, pod) {
		return plan.Update{}, false
	}
	patch, err := Patch(pod, from, to, updateHash)
	if err != nil {
		return plan.Update{}, false
	}
	return plan.Update{Pod: pod, Node: node, Patch: patch, Restart: change == Images}, true
}

// Patch is the strategic merge patch that moves pod from template from to
// template to: the revision label, the template's labels and annotations
// (keys only from has are removed; keys others put on the pod stay), and
// the container images. The pod's UID is a precondition, so a patch never
// lands on a pod re-created under the same name.
func Patch(pod *corev1.Pod, from, to *corev1.PodTemplateSpec, hash string) ([]byte, error) {
	labels := diff(from.Labels, to.Labels)
	labels[nasv1alpha1.LabelRevisionHash] = &hash
	meta := map[string]any{"uid": pod.UID, "labels": labels}
	a := diff(from.Annotations, to.Annotations)
	// The Cluster Autoscaler's mark is the controller's, not the
	// template's: never removed.
	delete(a, podtemplate.AnnotationDaemonSetPod)
	body := map[string]any{"metadata": meta}
	var containers []map[string]string
	for i, c := range to.Spec.Containers {
		if from.Spec.Containers[i].Image != c.Image {
			containers = append(containers, map[string]string{"name": c.Name, "image": c.Image})
		}
	}
	if len(containers) > 0 {
		// The kubelet restarts each changed container once; health
		// checks of the new revision count the restarts after that.
		n, _ := podtemplate.Restarts(pod)
		base := strconv.Itoa(int(n) + len(containers))
		a[podtemplate.AnnotationRestartsAtUpdate] = &base
	}
	if len(a) > 0 {
		meta["annotations"] = a
	}
	if len(containers) > 0 {
		body["spec"] = map[string]any{"containers": containers}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding the in-place patch of Pod %q: %w", pod.Name, err)
	}
	return b, nil
}

// diff is the merge patch from a to b: b's entries, and null for keys only
// a has.
func diff(a, b map[string]string) map[string]*string {
	out := make(map[string]*string, len(b))
	for k := range a {
		if _, ok := b[k]; !ok {
			out[k] = nil
		}
	}
	for k, v := range b {
		out[k] = &v
	}
	return out
}

func without[T any](items []T, drop map[int]bool) []T {
	if len(drop) == 0 {
		return items
	}
	out := make([]T, 0, len(items)-len(drop))
	for i, it := range items {
		if !drop[i] {
			out = append(out, it)
		}
	}
	return out
}
