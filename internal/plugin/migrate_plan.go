package plugin

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// The pure half of `migrate`: from what it read, whether the migration may
// go ahead, and its steps as data (each with the kubectl commands that do
// the same by hand, the state the cluster is in once it is done, and how
// to go back to the DaemonSet from there). The command prints them for
// --dry-run, runs them otherwise, and prints them again when a step fails.
//
// Why the pods are relabelled: the controller knows a pod's revision only
// by its controller-revision-hash label. A DaemonSet's pods carry the
// DaemonSet's hash of the same template, computed differently, so once
// adopted they would all look outdated and be replaced. Which pods run the
// template exactly is known for certain only from the DaemonSet's own
// history (its current revision's hash), not from comparing pod specs with
// the template (admission and defaulting add fields to every pod), so the
// migration tells the controller: pods of the DaemonSet's current
// revision get the hash of the NodeAgentSet's first revision, whose
// template is the DaemonSet's.

// migrationInput is what migrate read before acting.
type migrationInput struct {
	DS *appsv1.DaemonSet
	// Revisions of the DaemonSet's namespace.
	Revisions []appsv1.ControllerRevision
	// Pods of the namespace that the DaemonSet's selector matches.
	Pods []corev1.Pod
	// SetExists: a NodeAgentSet of the DaemonSet's name exists already.
	SetExists bool
	// First is the set to create: the DaemonSet converted, paused, as the
	// API server would store it (a server-side dry run).
	First *nasv1alpha1.NodeAgentSet
	// Taken is the ControllerRevision already named as First's revision
	// would be, if any.
	Taken *appsv1.ControllerRevision
	// Target is the set of -f, as the API server would store it; nil
	// without -f. TargetFile is its path.
	Target     *nasv1alpha1.NodeAgentSet
	TargetFile string
	// Backup and Manifest are the files the DaemonSet and First are
	// saved to.
	Backup, Manifest string
}

// migration is the assessed migration: what it adopts, and its steps.
type migration struct {
	in *migrationInput
	// dsHash is the DaemonSet's current revision; hash First's.
	dsHash, hash string
	// current are the DaemonSet's live pods of dsHash; older its live pods
	// of older revisions (OnDelete keeps them).
	current, older []corev1.Pod
	// dsRevisions are the DaemonSet's ControllerRevisions, deleted once
	// the set has adopted the pods.
	dsRevisions []appsv1.ControllerRevision
	// rolls: Target's template differs from the DaemonSet's.
	rolls bool
	notes []string
	steps []step
}

type stepKind int

const (
	stepBackup stepKind = iota
	stepOrphan
	stepRelabel
	stepCreate
	stepAdopt
	stepCleanup
	stepFinish
)

// step is one step of the migration, as data.
type step struct {
	kind  stepKind
	title string
	// manual are kubectl commands doing the same by hand.
	manual []string
	// after is the cluster's state once the step is done.
	after string
	// revert puts the DaemonSet back from that state.
	revert []string
}

// assess checks the input and returns the migration, or an error saying
// why it must not run (nothing has been changed then).
func assess(in *migrationInput) (*migration, error) {
	ds := in.DS
	if err := refuseState(in); err != nil {
		return nil, err
	}
	m := &migration{in: in}
	var err error
	if m.dsHash, m.dsRevisions, err = currentRevision(ds, in.Revisions); err != nil {
		return nil, err
	}
	encoded, err := revision.Encode(&in.First.Spec.Template)
	if err != nil {
		return nil, err
	}
	m.hash = revision.Hash(encoded, nil)
	if in.Taken != nil && !revision.Holds(in.Taken, encoded) {
		return nil, fmt.Errorf("ControllerRevision %s already exists and holds another template: the NodeAgentSet's first revision would get another name and hash, and every agent would be replaced; delete it or run the migration by hand under another name", in.Taken.Name)
	}
	if err := m.sortPods(); err != nil {
		return nil, err
	}
	if err := m.checkTarget(); err != nil {
		return nil, err
	}
	m.explain()
	m.steps = m.plan()
	return m, nil
}

// refuseState refuses a DaemonSet that is going away or being rolled out,
// and a set name already in use.
func refuseState(in *migrationInput) error {
	ds := in.DS
	ref := "daemonset/" + ds.Name
	switch {
	case ds.DeletionTimestamp != nil:
		return fmt.Errorf("%s is being deleted", ref)
	case in.SetExists:
		return fmt.Errorf("nodeagentset/%s already exists in namespace %s: migrate creates it; delete it (--cascade=orphan keeps its agents) or migrate by hand", ds.Name, ds.Namespace)
	case ds.Status.ObservedGeneration < ds.Generation:
		return fmt.Errorf("%s: its controller has not acted on the latest spec yet (generation %d, observed %d); wait for `kubectl rollout status %s -n %s`, then run again",
			ref, ds.Generation, ds.Status.ObservedGeneration, ref, ds.Namespace)
	case ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType &&
		ds.Status.UpdatedNumberScheduled < ds.Status.DesiredNumberScheduled:
		return fmt.Errorf("%s is rolling out (%d of %d nodes updated): its controller is deleting and creating agents right now, and a node whose old agent it has just deleted would be left without one until the NodeAgentSet places it; wait for `kubectl rollout status %s -n %s`, then run again",
			ref, ds.Status.UpdatedNumberScheduled, ds.Status.DesiredNumberScheduled, ref, ds.Namespace)
	}
	return nil
}

// currentRevision is the hash of the DaemonSet's newest revision (the
// one its template is) and all its revisions.
func currentRevision(ds *appsv1.DaemonSet, all []appsv1.ControllerRevision) (string, []appsv1.ControllerRevision, error) {
	var own []appsv1.ControllerRevision
	for _, cr := range all {
		if ref := metav1.GetControllerOfNoCopy(&cr); ref != nil && ref.UID == ds.UID {
			own = append(own, cr)
		}
	}
	if len(own) == 0 {
		return "", nil, fmt.Errorf("daemonset/%s has no ControllerRevision: its controller has not run yet", ds.Name)
	}
	newest := slices.MaxFunc(own, func(a, b appsv1.ControllerRevision) int { return cmp.Compare(a.Revision, b.Revision) })
	hash := newest.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]
	if hash == "" {
		return "", nil, fmt.Errorf("ControllerRevision %s of daemonset/%s has no %s label", newest.Name, ds.Name, appsv1.DefaultDaemonSetUniqueLabelKey)
	}
	return hash, own, nil
}

// sortPods splits the DaemonSet's pods by revision, and refuses orphans
// that the set would adopt though they are no agents of the DaemonSet.
func (m *migration) sortPods() error {
	var strays, others []string
	for _, p := range m.in.Pods {
		ref := metav1.GetControllerOfNoCopy(&p)
		switch {
		case ref == nil:
			strays = append(strays, p.Name)
		case ref.UID != m.in.DS.UID:
			others = append(others, p.Name)
		case p.DeletionTimestamp != nil:
			m.notes = append(m.notes, fmt.Sprintf("pod %s is terminating: it is not adopted; its node gets a new agent once it is gone", p.Name))
		case podtemplate.Hash(&p) == m.dsHash:
			m.current = append(m.current, p)
		default:
			m.older = append(m.older, p)
		}
	}
	if len(strays) > 0 {
		return fmt.Errorf("pods %s match the DaemonSet's selector but belong to no controller: the NodeAgentSet would adopt them as agents of an unknown revision (and delete them as duplicates where a node has two); delete them or change their labels, then run again",
			strings.Join(strays, ", "))
	}
	if len(others) > 0 {
		m.notes = append(m.notes, fmt.Sprintf("pods %s match the selector but another controller owns them: the NodeAgentSet leaves them alone", strings.Join(others, ", ")))
	}
	if len(m.older) > 0 && m.in.DS.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType {
		return fmt.Errorf("%d agents of daemonset/%s run an older template: it is rolling out; wait for `kubectl rollout status daemonset/%s -n %s`, then run again",
			len(m.older), m.in.DS.Name, m.in.DS.Name, m.in.DS.Namespace)
	}
	return nil
}

// checkTarget checks the set of -f against the DaemonSet: the same name,
// namespace and selector (selector is immutable, and only the pods it
// selects are adopted); no surge when a changed template holds host ports.
func (m *migration) checkTarget() error {
	t, ds := m.in.Target, m.in.DS
	if t == nil {
		return nil
	}
	if t.Name != ds.Name || (t.Namespace != "" && t.Namespace != ds.Namespace) {
		return fmt.Errorf("%s: the NodeAgentSet must be named %s in namespace %s, as the DaemonSet", m.in.TargetFile, ds.Name, ds.Namespace)
	}
	want, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return err
	}
	got, err := metav1.LabelSelectorAsSelector(t.Spec.Selector.AsMeta())
	if err != nil {
		return err
	}
	if got.String() != want.String() {
		return fmt.Errorf("%s: spec.selector %q is not the DaemonSet's %q: the selector cannot change after creation, and the set adopts only the pods it selects",
			m.in.TargetFile, got.String(), want.String())
	}
	// The revision is the template and the node overrides: the target
	// rolls when either differs from what the agents run.
	encoded, err := revision.EncodeSpec(revision.SpecOf(t))
	if err != nil {
		return err
	}
	m.rolls = revision.Hash(encoded, nil) != m.hash
	if m.rolls && surges(t) && hostPorts(&t.Spec.Template.Spec) {
		return errors.New(m.in.TargetFile + ": maxSurge with host ports: a surge agent could never start beside the old one on its node (k/k #106417); use maxUnavailable")
	}
	return nil
}

func surges(set *nasv1alpha1.NodeAgentSet) bool {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	return set.Spec.UpdateStrategy.Type != nasv1alpha1.OnDeleteStrategy && ru != nil && ru.MaxSurge != nil &&
		ru.MaxSurge.String() != "0" && ru.MaxSurge.String() != "0%"
}

func hostPorts(spec *corev1.PodSpec) bool {
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, p := range c.Ports {
			if p.HostPort != 0 || (spec.HostNetwork && p.ContainerPort != 0) {
				return true
			}
		}
	}
	return false
}

// explain adds the notes a person needs before saying yes.
func (m *migration) explain() {
	ds := m.in.DS
	if len(m.older) > 0 {
		m.notes = append(m.notes, fmt.Sprintf("%d agents run older templates of the DaemonSet (OnDelete): they are adopted as they are, as an older revision, and replaced only when deleted (or by the rolling update of a RollingUpdate set)", len(m.older)))
	}
	if m.rolls {
		m.notes = append(m.notes, fmt.Sprintf("the template of %s differs from the DaemonSet's (fields the API server defaulted in the DaemonSet count): once the agents are adopted, a rolling update replaces them under the set's budgets; to keep them, start from `kubectl get daemonset %s -n %s -o yaml | kubectl nodeagentset convert -f -`",
			m.in.TargetFile, ds.Name, ds.Namespace))
	}
	if surges(m.in.First) && hostPorts(&ds.Spec.Template.Spec) {
		m.notes = append(m.notes, "the DaemonSet surges and its agents use host ports: the migration restarts nothing, but a later rolling update would stall; set maxSurge 0 and maxUnavailable instead")
	}
	m.notes = append(m.notes, "between the DaemonSet's deletion and the set's first pass (seconds) no controller places agents: a node joining then gets its agent from the set",
		"a GitOps tool that owns the DaemonSet would re-create it: take it out of its source (or suspend the sync) first")
}

// selector is the DaemonSet's selector as kubectl's -l takes it.
func (m *migration) selector() string {
	sel, err := metav1.LabelSelectorAsSelector(m.in.DS.Spec.Selector)
	if err != nil {
		return labels.Nothing().String()
	}
	return sel.String()
}

// plan is the steps, in the order that keeps one agent per node: the
// DaemonSet's controller stops (the DaemonSet is gone) before the set can
// place anything, and the pods carry the set's hash before it sees them.
// The set is created paused, so that should its revision not be the one
// the pods were given, it replaces nothing (see stepAdopt).
func (m *migration) plan() []step {
	ds, ns := m.in.DS, m.in.DS.Namespace
	sel, name, rev := m.selector(), ds.Name, revision.Name(m.in.First, m.hash)
	reCreate := "kubectl create -f " + m.in.Backup
	relabelBack := fmt.Sprintf("kubectl label pods -n %s -l '%s,%s=%s' %s=%s %s- --overwrite",
		ns, sel, nasv1alpha1.LabelRevisionHash, m.hash, nasv1alpha1.LabelRevisionHash, m.dsHash, nasv1alpha1.LabelSetName)
	dropSet := []string{
		fmt.Sprintf("kubectl delete nodeagentset %s -n %s --cascade=orphan", name, ns),
		fmt.Sprintf("kubectl delete controllerrevision %s -n %s", rev, ns),
	}
	steps := []step{{
		kind:   stepBackup,
		title:  fmt.Sprintf("Save the DaemonSet to %s and the NodeAgentSet to create to %s", m.in.Backup, m.in.Manifest),
		manual: []string{fmt.Sprintf("kubectl get daemonset %s -n %s -o yaml > %s   # remove metadata.uid, resourceVersion, creationTimestamp, generation, managedFields and status before re-creating it from this file", name, ns, m.in.Backup)},
		after:  "Nothing in the cluster has changed.",
	}, {
		kind:   stepOrphan,
		title:  fmt.Sprintf("Delete the DaemonSet with propagationPolicy Orphan, and wait until the garbage collector has released its %d pods (its controller stops; the agents run on)", len(m.current)+len(m.older)),
		manual: []string{fmt.Sprintf("kubectl delete daemonset %s -n %s --cascade=orphan", name, ns)},
		after:  "The DaemonSet is deleted; its agents run on, owned by no controller: none is placed on a node that joins.",
		revert: []string{reCreate + "   # the DaemonSet adopts its pods again, unchanged"},
	}, {
		kind: stepRelabel,
		title: fmt.Sprintf("Label the %d agents of the DaemonSet's revision %s with the NodeAgentSet's first revision %s (and the Cluster Autoscaler's DaemonSet-pod annotation); a label change restarts nothing",
			len(m.current), m.dsHash, m.hash),
		manual: []string{
			fmt.Sprintf("kubectl label pods -n %s -l '%s,%s=%s' %s=%s --overwrite", ns, sel, nasv1alpha1.LabelRevisionHash, m.dsHash, nasv1alpha1.LabelRevisionHash, m.hash),
			fmt.Sprintf("kubectl annotate pods -n %s -l '%s,%s=%s' %s=true --overwrite", ns, sel, nasv1alpha1.LabelRevisionHash, m.hash, podtemplate.AnnotationDaemonSetPod),
		},
		after:  "The DaemonSet is deleted; its agents run on, unowned, labelled as the NodeAgentSet's first revision.",
		revert: []string{relabelBack, reCreate},
	}, {
		kind:   stepCreate,
		title:  fmt.Sprintf("Create nodeagentset/%s, paused, with the DaemonSet's template: its first revision is %s", name, rev),
		manual: []string{"kubectl create -f " + m.in.Manifest},
		after:  fmt.Sprintf("nodeagentset/%s exists, paused, and adopts the agents.", name),
		revert: slices.Concat(dropSet, []string{relabelBack, reCreate}),
	}, {
		kind: stepAdopt,
		title: fmt.Sprintf("Wait until nodeagentset/%s owns every agent with revision %s (none deleted or restarted)",
			name, rev),
		manual: []string{
			fmt.Sprintf("kubectl get nodeagentset %s -n %s -o jsonpath='{.status.updateRevision}'   # must print %s; otherwise stop: the set is paused and replaces nothing", name, ns, rev),
			fmt.Sprintf("kubectl get pods -n %s -l '%s' -L %s   # every agent has the set's name", ns, sel, nasv1alpha1.LabelSetName),
		},
		after:  fmt.Sprintf("nodeagentset/%s owns every agent, paused.", name),
		revert: slices.Concat(dropSet, []string{relabelBack, reCreate}),
	}}
	if len(m.dsRevisions) > 0 {
		names := make([]string, 0, len(m.dsRevisions))
		for _, cr := range m.dsRevisions {
			names = append(names, cr.Name)
		}
		steps = append(steps, step{
			kind:   stepCleanup,
			title:  "Delete the DaemonSet's ControllerRevisions, orphaned with it",
			manual: []string{fmt.Sprintf("kubectl delete controllerrevision -n %s %s", ns, strings.Join(names, " "))},
			after:  fmt.Sprintf("nodeagentset/%s owns every agent, paused; the DaemonSet's history is gone (a re-created DaemonSet starts a new one).", name),
			revert: slices.Concat(dropSet, []string{relabelBack, reCreate}),
		})
	}
	return append(steps, m.finish(name, ns))
}

// finish unpauses the set, or gives it the spec of -f.
func (m *migration) finish(name, ns string) step {
	undo := fmt.Sprintf("kubectl nodeagentset rollout undo %s -n %s --to-revision 1   # then wait for `kubectl nodeagentset rollout status %s -n %s`", name, ns, name, ns)
	if m.in.Target == nil {
		return step{
			kind:   stepFinish,
			title:  fmt.Sprintf("Resume nodeagentset/%s: the migration is complete", name),
			manual: []string{fmt.Sprintf("kubectl nodeagentset rollout resume %s -n %s", name, ns)},
			after:  fmt.Sprintf("nodeagentset/%s runs the agents the DaemonSet ran.", name),
		}
	}
	s := step{
		kind:   stepFinish,
		title:  fmt.Sprintf("Give nodeagentset/%s the spec of %s (same template: nothing restarts)", name, m.in.TargetFile),
		manual: []string{"kubectl replace -f " + m.in.TargetFile},
		after:  fmt.Sprintf("nodeagentset/%s runs the agents the DaemonSet ran, with the spec of %s.", name, m.in.TargetFile),
	}
	if m.rolls {
		s.title = fmt.Sprintf("Give nodeagentset/%s the spec of %s: its new template starts a rolling update (follow it with `kubectl nodeagentset rollout status %s -n %s`)", name, m.in.TargetFile, name, ns)
		s.after = fmt.Sprintf("nodeagentset/%s is rolling out the template of %s; revision 1 is the DaemonSet's template.", name, m.in.TargetFile)
		s.revert = []string{undo}
	}
	return s
}
