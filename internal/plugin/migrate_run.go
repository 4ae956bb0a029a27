package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// migrator is the side-effecting half of `migrate`: it reads what the
// assessment needs and runs the steps.
type migrator struct {
	c           client.Client
	out, errOut io.Writer
	timeout     time.Duration
	// set is the NodeAgentSet once step 4 created it.
	set *nasv1alpha1.NodeAgentSet
}

// read gathers the migration's input; the sets are passed through a
// server-side dry run, so the hash is computed from what the controller
// will read.
func (x *migrator) read(ctx context.Context, ns, name string, f migrateFlags) (*migrationInput, error) {
	ds := &appsv1.DaemonSet{}
	if err := x.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ds); err != nil {
		return nil, err
	}
	in := &migrationInput{DS: ds, TargetFile: f.file}
	in.Backup, in.Manifest = files(f.dir, ns, name)
	var revs appsv1.ControllerRevisionList
	if err := x.c.List(ctx, &revs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	in.Revisions = revs.Items
	var err error
	if in.Pods, err = x.pods(ctx, ds, nil); err != nil {
		return nil, err
	}
	err = x.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &nasv1alpha1.NodeAgentSet{})
	if gone, err := isGone(err); err != nil {
		return nil, err
	} else if !gone {
		in.SetExists = true
	}
	if f.file != "" {
		target, err := readTarget(f.file)
		if err != nil {
			return nil, err
		}
		if target.Namespace == "" {
			target.Namespace = ns
		}
		if in.Target, err = x.dryRun(ctx, target, in.SetExists); err != nil {
			return nil, fmt.Errorf("%s: %w", f.file, err)
		}
	}
	first, err := firstSet(ds, in.Target)
	if err != nil {
		return nil, err
	}
	if in.First, err = x.dryRun(ctx, first, in.SetExists); err != nil {
		return nil, fmt.Errorf("the converted DaemonSet: %w", err)
	}
	return in, x.readTaken(ctx, in)
}

// pods lists the pods the DaemonSet's selector matches, and extra.
func (x *migrator) pods(ctx context.Context, ds *appsv1.DaemonSet, extra labels.Set) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, err
	}
	if len(extra) > 0 {
		reqs, _ := labels.SelectorFromSet(extra).Requirements()
		sel = sel.Add(reqs...)
	}
	var pods corev1.PodList
	err = x.c.List(ctx, &pods, client.InNamespace(ds.Namespace), client.MatchingLabelsSelector{Selector: sel})
	return pods.Items, err
}

// dryRun is set as the API server would store it (defaults, pruning,
// validation), or the server's refusal. Skipped when a set of the name
// exists: the assessment refuses that.
func (x *migrator) dryRun(ctx context.Context, set *nasv1alpha1.NodeAgentSet, exists bool) (*nasv1alpha1.NodeAgentSet, error) {
	out := set.DeepCopy()
	if exists {
		return out, nil
	}
	if err := x.c.Create(ctx, out, client.DryRunAll); err != nil {
		return nil, fmt.Errorf("the API server refuses the NodeAgentSet: %w", err)
	}
	return out, nil
}

// readTaken reads the ControllerRevision named as the first revision.
func (x *migrator) readTaken(ctx context.Context, in *migrationInput) error {
	encoded, err := revision.Encode(&in.First.Spec.Template)
	if err != nil {
		return err
	}
	cr := &appsv1.ControllerRevision{}
	err = x.c.Get(ctx, client.ObjectKey{Namespace: in.DS.Namespace, Name: revision.Name(in.First, revision.Hash(encoded, nil))}, cr)
	if gone, err := isGone(err); gone || err != nil {
		return err
	}
	in.Taken = cr
	return nil
}

// run runs the steps in order; the first failure stops it with a report.
func (x *migrator) run(ctx context.Context, m *migration) error {
	for i, s := range m.steps {
		fmt.Fprintf(x.out, "Step %d ... ", i+1)
		start := time.Now()
		if err := x.do(ctx, m, s); err != nil {
			fmt.Fprintln(x.out, "failed")
			return m.failed(x.errOut, i, err)
		}
		fmt.Fprintf(x.out, "done in %s\n", time.Since(start).Round(time.Millisecond))
	}
	fmt.Fprintf(x.out, "daemonset/%s migrated to nodeagentset/%s\n", m.in.DS.Name, m.in.DS.Name)
	return nil
}

func (x *migrator) do(ctx context.Context, m *migration, s step) error {
	switch s.kind {
	case stepBackup:
		return x.save(m)
	case stepOrphan:
		return x.orphan(ctx, m)
	case stepRelabel:
		return x.relabel(ctx, m)
	case stepCreate:
		x.set = fresh(m.in.First)
		return x.c.Create(ctx, x.set)
	case stepAdopt:
		return x.adopt(ctx, m)
	case stepCleanup:
		return x.cleanup(ctx, m)
	case stepFinish:
		return x.finish(ctx, m)
	}
	return fmt.Errorf("unknown step %d", s.kind)
}

func (x *migrator) save(m *migration) error {
	b, err := backup(m.in.DS)
	if err != nil {
		return err
	}
	if err := os.WriteFile(m.in.Backup, b, 0o600); err != nil {
		return err
	}
	if b, err = manifest(m.in.First); err != nil {
		return err
	}
	return os.WriteFile(m.in.Manifest, b, 0o600)
}

// orphan deletes the DaemonSet as it was assessed (its UID and resource
// version as preconditions) and waits until it is gone: the garbage
// collector removes it only after it has released every pod.
func (x *migrator) orphan(ctx context.Context, m *migration) error {
	ds := m.in.DS
	err := x.c.Delete(ctx, ds, client.PropagationPolicy(metav1.DeletePropagationOrphan),
		client.Preconditions{UID: &ds.UID, ResourceVersion: &ds.ResourceVersion})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("daemonset/%s changed since it was checked, and was not deleted: run migrate again: %w", ds.Name, err)
	}
	if err != nil {
		return err
	}
	var last string
	return x.poll(ctx, &last, func(ctx context.Context) (bool, error) {
		if gone, err := isGone(x.c.Get(ctx, client.ObjectKeyFromObject(ds), &appsv1.DaemonSet{})); err != nil || !gone {
			last = "the DaemonSet is still there (the garbage collector releases its pods first)"
			return false, err
		}
		pods, err := x.pods(ctx, ds, nil)
		for _, p := range pods {
			for _, ref := range p.OwnerReferences {
				if ref.UID == ds.UID {
					last = "pod " + p.Name + " still names the DaemonSet as owner"
					return false, err
				}
			}
		}
		return err == nil, err
	})
}

// relabel gives the released pods of the DaemonSet's current revision the
// set's first revision hash, a few at a time, each patch conditional on
// the pod's UID.
func (x *migrator) relabel(ctx context.Context, m *migration) error {
	pods, err := x.pods(ctx, m.in.DS, labels.Set{nasv1alpha1.LabelRevisionHash: m.dsHash})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var errs []error
	work := make(chan corev1.Pod)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for p := range work {
				if err := x.relabelPod(ctx, &p, m.hash); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range liveAgents(pods) {
		work <- p
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

func (x *migrator) relabelPod(ctx context.Context, p *corev1.Pod, hash string) error {
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		return fmt.Errorf("pod %s is owned by %s %s: not relabelled", p.Name, ref.Kind, ref.Name)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":         p.UID,
		"labels":      map[string]string{nasv1alpha1.LabelRevisionHash: hash},
		"annotations": map[string]string{podtemplate.AnnotationDaemonSetPod: "true"},
	}})
	if err != nil {
		return err
	}
	err = x.c.Patch(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}, client.RawPatch(types.MergePatchType, patch))
	if apierrors.IsNotFound(err) {
		return nil // gone meanwhile: its node gets an agent from the set
	}
	return err
}

// adopt waits until the set owns every live pod the selector matches and
// reports the revision the pods were labelled with. A different revision,
// or an agent not labelled with it, stops the migration at once: the set
// is paused, so it replaces nothing.
func (x *migrator) adopt(ctx context.Context, m *migration) error {
	var last string
	return x.poll(ctx, &last, func(ctx context.Context) (bool, error) {
		set := &nasv1alpha1.NodeAgentSet{}
		if err := x.c.Get(ctx, client.ObjectKeyFromObject(x.set), set); err != nil {
			return false, err
		}
		if err := revisionOf(set, m.hash); err != nil {
			return false, err
		}
		pods, err := x.pods(ctx, m.in.DS, nil)
		if err != nil {
			return false, err
		}
		live, owned := liveAgents(pods), 0
		for i := range live {
			if err := m.checkHash(&live[i]); err != nil {
				return false, err
			}
			if metav1.IsControlledBy(&live[i], set) {
				owned++
			}
		}
		st := set.Status
		last = fmt.Sprintf("%d of %d agents adopted; status: revision %q, %d of %d nodes updated, observed generation %d of %d",
			owned, len(live), st.UpdateRevision, st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.ObservedGeneration, set.Generation)
		return owned == len(live) && st.UpdateRevision != "" && st.ObservedGeneration >= set.Generation, nil
	})
}

// cleanup deletes the DaemonSet's revisions, each as it was read.
func (x *migrator) cleanup(ctx context.Context, m *migration) error {
	var errs []error
	for i := range m.dsRevisions {
		cr := &m.dsRevisions[i]
		err := x.c.Delete(ctx, cr, client.Preconditions{UID: &cr.UID})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// finish resumes the set, or gives it the spec of -f.
func (x *migrator) finish(ctx context.Context, m *migration) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		set := &nasv1alpha1.NodeAgentSet{}
		if err := x.c.Get(ctx, client.ObjectKeyFromObject(x.set), set); err != nil {
			return err
		}
		if t := m.in.Target; t != nil {
			set.Spec, set.Labels, set.Annotations = *t.Spec.DeepCopy(), t.Labels, t.Annotations
		} else if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			ru.Paused = false
		}
		return x.c.Update(ctx, set)
	})
}

// poll checks every quarter second until done, an error, or the timeout;
// a timeout says what was seen last.
func (x *migrator) poll(ctx context.Context, last *string, check func(context.Context) (bool, error)) error {
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, x.timeout, true, check)
	if err != nil && wait.Interrupted(err) {
		return fmt.Errorf("gave up after %s: %s", x.timeout, *last)
	}
	return err
}

// fresh is a set to create: no server fields, no status.
func fresh(set *nasv1alpha1.NodeAgentSet) *nasv1alpha1.NodeAgentSet {
	return &nasv1alpha1.NodeAgentSet{
		TypeMeta: metav1.TypeMeta{APIVersion: nasv1alpha1.GroupVersion.String(), Kind: "NodeAgentSet"},
		ObjectMeta: metav1.ObjectMeta{Name: set.Name, Namespace: set.Namespace, Labels: set.Labels,
			Annotations: set.Annotations},
		Spec: *set.Spec.DeepCopy(),
	}
}
