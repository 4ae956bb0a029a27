package controller

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// revisions is the set's history as this pass sees it.
type revisions struct {
	history        []*appsv1.ControllerRevision
	update         *appsv1.ControllerRevision
	collisionCount *int32
}

// syncRevision makes sure a ControllerRevision holds the current template
// and returns it. A template equal to an old revision re-uses that revision,
// renumbered as the newest, so a rollback keeps its hash and restarts no pod
// already running it. A name taken by a different template is a hash
// collision: the collision count goes up and salts the next hash.
func (r *Reconciler) syncRevision(ctx context.Context, set *nasv1alpha1.NodeAgentSet) (revisions, error) {
	revs := revisions{collisionCount: set.Status.CollisionCount}
	var list appsv1.ControllerRevisionList
	if err := r.Client.List(ctx, &list, client.InNamespace(set.Namespace),
		client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		return revs, fmt.Errorf("listing ControllerRevisions: %w", err)
	}
	revs.history = revision.Owned(list.Items, set.UID)
	encoded, err := revision.Encode(&set.Spec.Template)
	if err != nil {
		return revs, err
	}
	top := revision.MaxNumber(revs.history)
	if found := revision.FindEqual(revs.history, encoded); found != nil {
		if found.Revision < top {
			found = found.DeepCopy()
			found.Revision = top + 1
			if err := r.Client.Update(ctx, found); err != nil {
				return revs, fmt.Errorf("renumbering ControllerRevision %q: %w", found.Name, err)
			}
		}
		revs.update = found
		return revs, nil
	}
	for range 5 {
		hash := revision.Hash(encoded, revs.collisionCount)
		cr := revision.Build(set, encoded, hash, top+1)
		err := r.Client.Create(ctx, cr)
		if err == nil {
			revs.update = cr
			revs.history = append(revs.history, cr)
			return revs, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return revs, fmt.Errorf("creating ControllerRevision %q: %w", cr.Name, err)
		}
		existing := &appsv1.ControllerRevision{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(cr), existing); err != nil {
			return revs, fmt.Errorf("reading ControllerRevision %q: %w", cr.Name, err)
		}
		if ref := metav1.GetControllerOfNoCopy(existing); ref != nil && ref.UID == set.UID &&
			string(existing.Data.Raw) == string(encoded) {
			// Ours, created by an earlier pass the cache has not shown yet.
			revs.update = existing
			revs.history = append(revs.history, existing)
			return revs, nil
		}
		revs.collisionCount = ptr.To(ptr.Deref(revs.collisionCount, 0) + 1)
	}
	return revs, fmt.Errorf("no free ControllerRevision name for the template after %d hash collisions",
		ptr.Deref(revs.collisionCount, 0))
}

// pruneHistory deletes the oldest revisions beyond revisionHistoryLimit,
// never one a live pod, the current or the update revision uses.
func (r *Reconciler) pruneHistory(ctx context.Context, set *nasv1alpha1.NodeAgentSet, revs revisions, live map[string]bool) error {
	limit := ptr.Deref(set.Spec.RevisionHistoryLimit, 10)
	for _, cr := range revision.Prunable(revs.history, live, limit) {
		if err := r.Client.Delete(ctx, cr, client.Preconditions{UID: &cr.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("pruning ControllerRevision %q: %w", cr.Name, err)
		}
	}
	return nil
}
