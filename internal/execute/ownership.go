package execute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
)

// ClaimUnlabelled puts the set-name label back on the set's pods that lost
// it, adopts matching orphans (label and controller reference, so the
// full pod cache sees them), and releases the set's pods that no longer
// match. Every error is returned, joined.
func (x *Executor) ClaimUnlabelled(ctx context.Context, set *nasv1alpha1.NodeAgentSet, u plan.Unlabelled) error {
	var errs []error
	for _, m := range u.Relabel {
		errs = append(errs, x.patchOwnership(ctx, set, m.ObjectMeta, keepController, true))
	}
	for _, m := range u.Adopt {
		errs = append(errs, x.patchOwnership(ctx, set, m.ObjectMeta, adopt, true))
	}
	for _, m := range u.Release {
		errs = append(errs, x.patchOwnership(ctx, set, m.ObjectMeta, release, false))
	}
	return errors.Join(errs...)
}

type controllerChange int

const (
	keepController controllerChange = iota
	adopt
	release
)

// setController adds (adopt) or removes (release) the set's controller
// reference on a pod of the full cache.
func (x *Executor) setController(ctx context.Context, set *nasv1alpha1.NodeAgentSet, pod *corev1.Pod, take bool) error {
	change := release
	if take {
		change = adopt
	}
	return x.patchOwnership(ctx, set, pod.ObjectMeta, change, false)
}

// patchOwnership changes a pod's controller reference to the set and, with
// label, puts the set-name label on it. The uid in the patch makes it fail
// rather than touch a new pod of the same name.
func (x *Executor) patchOwnership(ctx context.Context, set *nasv1alpha1.NodeAgentSet, pod metav1.ObjectMeta, change controllerChange, label bool) error {
	patchMeta := map[string]any{"uid": pod.UID}
	if change != keepController {
		refs := make([]metav1.OwnerReference, 0, len(pod.OwnerReferences)+1)
		for _, r := range pod.OwnerReferences {
			if r.UID != set.UID {
				refs = append(refs, r)
			}
		}
		if change == adopt {
			refs = append(refs, metav1.OwnerReference{
				APIVersion: nasv1alpha1.GroupVersion.String(), Kind: "NodeAgentSet", Name: set.Name, UID: set.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			})
		}
		patchMeta["ownerReferences"] = refs
	}
	if label {
		patchMeta["labels"] = map[string]string{nasv1alpha1.LabelSetName: set.Name}
	}
	patch, err := json.Marshal(map[string]any{"metadata": patchMeta})
	if err != nil {
		return err
	}
	target := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}
	if err := x.Client.Patch(ctx, target, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
		countFailure(set.Namespace, set.Name, verbPatch)
		return fmt.Errorf("%s of Pod %q: %w", actionOf(change, label), pod.Name, err)
	}
	action := map[controllerChange]string{keepController: "Relabel", adopt: "Adopt", release: "Release"}[change]
	x.Recorder.Eventf(EventTarget(set), &corev1.Pod{ObjectMeta: pod}, corev1.EventTypeNormal, action, action,
		"%s pod %s", pastTense(action), pod.Name)
	return nil
}

func actionOf(change controllerChange, label bool) string {
	switch {
	case change == adopt:
		return "adoption"
	case change == release:
		return "release"
	case label:
		return "relabelling"
	}
	return "patch"
}

func pastTense(action string) string { return strings.TrimSuffix(action, "e") + "ed" }
