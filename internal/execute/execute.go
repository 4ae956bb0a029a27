package execute

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/inplace"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// DefaultBurst is the most pod creates and deletes one pass issues, as in
// the DaemonSet controller; a larger plan continues in the next pass, which
// is queued at once.
const DefaultBurst = 250

// Executor carries out plans.
type Executor struct {
	Client client.Client
	// APIReader reads around the cache: a node must be confirmed gone
	// before its pods are deleted at once.
	APIReader    client.Reader
	Recorder     recorder.EventRecorder
	Expectations *Expectations
	Backoff      *Backoff
	// Burst caps creates plus deletes per pass (DefaultBurst when 0).
	Burst int
	// Clock returns now; time.Now when nil.
	Clock func() time.Time
}

// Outcome is what a pass did.
type Outcome struct {
	Created, Deleted, Updated int
	// Capped: the burst cap cut the pass short; run another at once.
	Capped bool
}

// Template gives the template a new pod on node is built from under the
// revision of hash (node overrides applied): the update revision's, or,
// for a create that names another revision, that one (the current
// revision, while a staged rollout's check has failed).
type Template func(node, hash string) (*corev1.PodTemplateSpec, error)

// Execute carries out p for set, building new pods from template (hash is
// the update revision's). Every error is returned, joined; the first
// failing write of a kind stops the rest of that kind for this pass.
func (x *Executor) Execute(ctx context.Context, set *nasv1alpha1.NodeAgentSet, p plan.Plan, template Template, hash string) (Outcome, error) {
	var errs []error
	for _, pod := range p.Release {
		errs = append(errs, x.setController(ctx, set, pod, false))
	}
	for _, pod := range p.Adopt {
		errs = append(errs, x.setController(ctx, set, pod, true))
	}
	burst := x.Burst
	if burst <= 0 {
		burst = DefaultBurst
	}
	var out Outcome
	deletes := p.Deletes
	if len(deletes) > burst {
		deletes, out.Capped = deletes[:burst], true
	}
	updates := p.Updates
	if room := burst - len(deletes); len(updates) > room {
		updates, out.Capped = updates[:room], true
	}
	creates := p.Creates
	if room := burst - len(deletes) - len(updates); len(creates) > room {
		creates, out.Capped = creates[:room], true
	}
	// Gates are opened beside the other writes, not after them: they touch
	// other pods (ones whose in-place update finished), and each waited
	// for this pass's close-and-patch round trips. On 200 kwok nodes
	// that wait was a third of the time an in-place update held its slot.
	var gateErr error
	var wg sync.WaitGroup
	wg.Go(func() { gateErr = x.openGates(ctx, set, p.OpenGates) })
	var err error
	out.Deleted, err = x.deletes(ctx, set, deletes)
	errs = append(errs, err)
	out.Updated, err = x.updates(ctx, set, updates)
	errs = append(errs, err)
	out.Created, err = x.creates(ctx, set, creates, template, hash)
	errs = append(errs, err)
	wg.Wait()
	errs = append(errs, gateErr)
	return out, errors.Join(errs...)
}

func (x *Executor) now() time.Time {
	if x.Clock != nil {
		return x.Clock()
	}
	return time.Now()
}

// creates issues the creates in slow-start batches (1, 2, 4, ...) so a
// template the API server refuses costs one request, not hundreds.
func (x *Executor) creates(ctx context.Context, set *nasv1alpha1.NodeAgentSet, creates []plan.Create, template Template, hash string) (int, error) {
	log := logr.FromContextOrDiscard(ctx)
	built := make([]*corev1.Pod, len(creates))
	var created []*corev1.Pod
	err := slowStart(len(creates), func(i int) error {
		c := creates[i]
		h := cmp.Or(c.Revision, hash)
		t, err := template(c.Node, h)
		if err != nil {
			return fmt.Errorf("building the Pod for Node %q: %w", c.Node, err)
		}
		pod := podtemplate.Build(set, t, h, c.Node)
		built[i] = pod
		if err := x.Client.Create(ctx, pod); err != nil {
			countFailure(set.Namespace, set.Name, verbCreate)
			return &writeError{related: nodeRef(c.Node), err: fmt.Errorf("creating Pod on Node %q: %w", c.Node, err)}
		}
		x.Expectations.Created(set.UID, pod, x.now())
		if inplace.HasGate(pod) {
			// Until its condition is True the kubelet keeps the pod unready
			// for ever; opened now rather than in the next pass. A failure
			// here is retried by the next pass (plan.OpenGates).
			if opened, err := x.setGate(ctx, pod, corev1.ConditionTrue, "Created"); err == nil && opened != nil {
				x.Expectations.Patched(set.UID, opened, x.now())
			}
		}
		log.V(4).Info("Created pod", "pod", klog.KObj(pod), "node", c.Node, "reason", c.Reason)
		return nil
	}, func(i int) { created = append(created, built[i]) })
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		// The set goes with its namespace: creating more pods there is
		// refused until then, and retrying only floods the API server
		// (DaemonSet stops on this cause too).
		return len(created), nil
	}
	if len(created) > 0 {
		x.Recorder.Eventf(EventTarget(set), podRef(created[0]), corev1.EventTypeNormal, "SuccessfulCreate", "Create",
			"%s", createdNote(created))
	}
	x.warnFailure(set, err, "FailedCreate", "Create")
	return len(created), err
}

func (x *Executor) deletes(ctx context.Context, set *nasv1alpha1.NodeAgentSet, deletes []plan.Delete) (int, error) {
	log := logr.FromContextOrDiscard(ctx)
	var deleted []plan.Delete
	kept := make([]bool, len(deletes))
	// All at once, as the DaemonSet controller deletes: slow start guards
	// against a template the server refuses, which deletes cannot meet, and
	// in a rolling update each wave would wait for log2(wave) round trips.
	err := inBatches(len(deletes), len(deletes), func(i int) error {
		d := deletes[i]
		opts := []client.DeleteOption{client.Preconditions{UID: &d.Pod.UID}}
		if d.Now {
			if gone, err := x.nodeGone(ctx, d.Node); err != nil || !gone {
				// Only briefly missing from the cache (re-registered,
				// cache lag): its kubelet may still run the pod, and a
				// forced delete would start its replacement beside it.
				kept[i] = true
				return err
			}
			opts = append(opts, client.GracePeriodSeconds(0))
		}
		err := x.Client.Delete(ctx, d.Pod, opts...)
		if err != nil && !apierrors.IsNotFound(err) {
			countFailure(set.Namespace, set.Name, verbDelete)
			return &writeError{related: podRef(d.Pod), err: fmt.Errorf("deleting Pod %q on Node %q: %w", d.Pod.Name, d.Node, err)}
		}
		now := x.now()
		x.Expectations.Deleted(set.UID, d.Pod.UID, now)
		if d.Finished {
			x.Backoff.Next(set.UID, d.Node, now)
		}
		log.V(4).Info("Deleted pod", "pod", klog.KObj(d.Pod), "node", d.Node, "reason", d.Reason)
		return nil
	}, func(i int) {
		if !kept[i] {
			deleted = append(deleted, deletes[i])
		}
	})
	if len(deleted) > 0 {
		x.Recorder.Eventf(EventTarget(set), podRef(deleted[0].Pod), corev1.EventTypeNormal, "SuccessfulDelete", "Delete",
			"%s", deletedNote(deleted))
	}
	x.warnFailure(set, err, "FailedDelete", "Delete")
	return len(deleted), err
}

// nodeGone confirms with a live read that a node the cache lacks is gone.
func (x *Executor) nodeGone(ctx context.Context, name string) (bool, error) {
	if x.APIReader == nil {
		return true, nil
	}
	err := x.APIReader.Get(ctx, client.ObjectKey{Name: name}, &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("confirming Node %q is gone: %w", name, err)
	}
	return false, nil
}

// EventTarget is the set as events should regard it: without its
// resourceVersion. client-go folds repeated events of one reason on one
// object into a series (one create, one patch, then a refresh every 30
// minutes), but only when their references are equal; with the version in
// it, every status change made the next wave of a rollout a new event.
func EventTarget(set *nasv1alpha1.NodeAgentSet) *nasv1alpha1.NodeAgentSet {
	return &nasv1alpha1.NodeAgentSet{
		TypeMeta:   set.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: set.Name, Namespace: set.Namespace, UID: set.UID},
	}
}

// slowStart runs do(0..n-1) in batches of 1, 2, 4, ... each batch in
// parallel, stopping after the first batch with an error. done is called,
// one at a time, for every success.
func slowStart(n int, do func(int) error, done func(int)) error {
	return inBatches(n, 1, do, done)
}

// inBatches runs do(0..n-1) in batches of first, 2×first, 4×first, ...
// each batch in parallel, stopping after the first batch with an error.
func inBatches(n, first int, do func(int) error, done func(int)) error {
	var mu sync.Mutex
	var errs []error
	for start, size := 0, max(first, 1); start < n; start, size = start+size, size*2 {
		end := min(start+size, n)
		var wg sync.WaitGroup
		for i := start; i < end; i++ {
			wg.Go(func() {
				err := do(i)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				done(i)
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return summarizeErrors(errs, n-end)
		}
	}
	return nil
}

// summarizeErrors makes one error of a batch's failures: the first, and a
// count of the rest and of the writes skipped after them. Joined whole, a
// large batch's errors outgrew the limits of an event note and of a
// condition message, and the API server refused the status that carried
// them.
func summarizeErrors(errs []error, skipped int) error {
	err := errs[0]
	if len(errs) > 1 {
		err = fmt.Errorf("%w (and %d more failures like it)", err, len(errs)-1)
	}
	if skipped > 0 {
		err = fmt.Errorf("%w; skipped %d more after the failure", err, skipped)
	}
	return err
}

// summarize lists up to five items and counts the rest, for event messages.
func summarize(items []string) string {
	const show = 5
	if len(items) <= show {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:show], ", "), len(items)-show)
}
