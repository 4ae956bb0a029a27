// Package stages is the stage machine of a staged rollout
// (rollingUpdate.canary, waves and health): from the stored
// status.rollout, a snapshot of the nodes, the verbs' annotations and now,
// it says which nodes the rollout may update now and what status.rollout
// becomes. Pure. Everything that must survive a manager restart (the
// canary nodes, when a soak began, the failure) is in the returned status,
// which the controller writes; the verbs are read from annotations naming
// the revision they apply to.
//
// Stages, in order: Canary (the canary nodes are updated), Soaking (every
// canary agent available and passing the checks for canary.soak),
// AwaitingPromotion (promotion Manual, until the promote verb), then
// Waves (one value of waves.by at a time, sorted, nodes without the label
// last; Soaking with status.rollout.wave set between two waves), Complete.
// A failed check stops the stage for good (Failed, or Aborted) until the
// retry verb; rollingUpdate.paused shows as Paused.
package stages

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/nodehealth"
	"github.com/nodeagentset/nodeagentset/internal/rolloutcheck"
)

// Node is what the stage machine knows of one desired node.
type Node struct {
	Name   string
	Labels map[string]string
	Health nodehealth.Health
	// InScope: partition and rollingUpdate.nodeSelector let the rollout
	// update it.
	InScope bool
	// Update is its agent of the update revision, if any; Available says
	// whether that agent is available; Outdated whether an agent of another
	// revision still runs there.
	Update    *corev1.Pod
	Available bool
	Outdated  bool
	// Skipped: an unhealthy node the rollout passes by (unhealthyNodes
	// Skip), which no stage waits for.
	Skipped bool
}

// done: the node needs nothing more from the rollout.
func (n Node) done() bool { return n.Skipped || n.Update != nil && n.Available && !n.Outdated }

// Input is what a decision is computed from.
type Input struct {
	Set *nasv1alpha1.NodeAgentSet
	// Revision is the update revision's name.
	Revision string
	// Rolling: agents of an older revision are being replaced (the current
	// revision differs from the update revision).
	Rolling bool
	// Nodes are the desired nodes, sorted by name.
	Nodes []Node
	Now   time.Time
}

// Result is the decision.
type Result struct {
	// Status is the next status.rollout; nil when the set has no stages.
	Status *nasv1alpha1.RolloutStatus
	// Failed: a check failed (or the abort verb was given); no node is
	// updated and nodes without an agent get the current revision. Abort:
	// updated nodes go back to the current revision too.
	Failed, Abort bool
	// NewFailure is a check that failed in this decision (not one already
	// stored), for the event and the metric.
	NewFailure *rolloutcheck.Failure
	// Holds says, by node, why the stage keeps the rollout off it now.
	Holds map[string]string
	// Due is when time alone changes the decision (a soak ends, an agent's
	// maxUnavailableTime runs out); zero when never.
	Due time.Time
}

// Hold is the reason of every node the stage machine holds back: the
// rollout means to update it, later.
const Hold = "waiting: "

// Staged says whether a set's rollout has stages.
func Staged(set *nasv1alpha1.NodeAgentSet) bool {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	return ru != nil && (ru.Canary != nil || ru.Waves != nil || ru.Health != nil)
}

// Next decides the stage.
func Next(in Input) Result {
	if !Staged(in.Set) {
		return Result{}
	}
	ru := in.Set.Spec.UpdateStrategy.RollingUpdate
	prev := in.Set.Status.Rollout
	if prev == nil || prev.Revision != in.Revision {
		prev = &nasv1alpha1.RolloutStatus{Revision: in.Revision}
	}
	m := &machine{in: in, ru: ru, prev: prev, next: prev.DeepCopy(), r: Result{Holds: map[string]string{}}}
	m.r.Status = m.next
	if !in.Rolling {
		m.enter(nasv1alpha1.PhaseComplete, "")
		m.next.Failure = nil
		return m.r
	}
	if m.failed() {
		return m.r
	}
	if ru.Paused {
		// The wave stays: resuming goes on with it, not with the canary.
		m.enter(nasv1alpha1.PhasePaused, m.prev.Wave)
		return m.r
	}
	if ru.Canary != nil && !m.canary() {
		return m.r
	}
	m.waves()
	return m.r
}

type machine struct {
	in   Input
	ru   *nasv1alpha1.RollingUpdate
	prev *nasv1alpha1.RolloutStatus
	next *nasv1alpha1.RolloutStatus
	r    Result
}

// enter sets the phase and wave, keeping phaseSince while they stay.
func (m *machine) enter(phase nasv1alpha1.RolloutPhase, wave string) {
	if m.prev.Phase != phase || m.prev.Wave != wave || m.prev.PhaseSince == nil {
		m.next.PhaseSince = ptr.To(metav1.NewTime(m.in.Now))
	}
	m.next.Phase, m.next.Wave = phase, wave
}

func (m *machine) due(at time.Time) {
	if m.r.Due.IsZero() || at.Before(m.r.Due) {
		m.r.Due = at
	}
}

func (m *machine) annotation(key string) string { return m.in.Set.Annotations[key] }

// failed applies the verbs and the checks; true when the rollout stands
// failed (Failed or Aborted) after them.
func (m *machine) failed() bool {
	retried := false
	if f := m.next.Failure; f != nil && m.prev.PhaseSince != nil &&
		m.annotation(nasv1alpha1.AnnotationRetry) == RetryValue(m.in.Revision, m.prev.PhaseSince.Time) {
		m.next.Failure, retried = nil, true
	}
	if m.next.Failure == nil && m.annotation(nasv1alpha1.AnnotationAbort) == m.in.Revision {
		m.next.Failure = &nasv1alpha1.RolloutFailure{Reason: "Aborted", Message: "aborted by kubectl nodeagentset rollout abort"}
	}
	// Checks run while the rollout runs: once it is complete the update
	// revision becomes the current one (skipped unhealthy nodes included,
	// see status.Counts.Reached) and Next returns before them, so a node
	// rebooting days later does not fail, or abort, the rollout.
	if m.next.Failure == nil {
		m.check()
	}
	f := m.next.Failure
	if f == nil {
		return false
	}
	m.r.Failed = true
	m.r.Abort = f.Reason == "Aborted" || m.annotation(nasv1alpha1.AnnotationAbort) == m.in.Revision ||
		m.ru.Health != nil && m.ru.Health.FailureAction == nasv1alpha1.FailureAbort
	phase := nasv1alpha1.PhaseFailed
	if m.r.Abort {
		phase = nasv1alpha1.PhaseAborted
	}
	m.enter(phase, m.prev.Wave)
	if retried {
		// Failed again right after a retry: a new failure, with a new
		// phaseSince, so the retry that cleared the old one (it names the
		// old phaseSince) does not clear this one on every pass.
		m.next.PhaseSince = ptr.To(metav1.NewTime(m.in.Now))
	}
	if !m.r.Abort {
		for _, n := range m.in.Nodes {
			m.r.Holds[n.Name] = fmt.Sprintf("%srollout failed (%s on node %s); kubectl nodeagentset rollout retry resumes", Hold, f.Reason, f.Node)
		}
	}
	return true
}

// RetryValue is the retry annotation that clears the failure of revision
// recorded at since (status.rollout.phaseSince).
func RetryValue(revision string, since time.Time) string {
	return revision + "@" + since.UTC().Format(time.RFC3339)
}

// check runs the health checks over every agent of the update revision,
// in node order; the first failure is stored.
func (m *machine) check() {
	spec := rolloutcheck.SpecOf(m.ru.Health)
	for _, n := range m.in.Nodes {
		f, due, bad := spec.Check(rolloutcheck.Agent{Pod: n.Update, Node: n.Health, Available: n.Available}, m.in.Now)
		if bad {
			m.next.Failure = &nasv1alpha1.RolloutFailure{Node: f.Node, Pod: f.Pod, Reason: f.Cause, Message: f.Message}
			m.r.NewFailure = &f
			return
		}
		if !due.IsZero() {
			m.due(due)
		}
	}
}

// rank orders the phases a rollout passes; a stored phase at or past the
// waves means the canary was soaked and promoted. A wave value is set only
// past the canary, and Failed, Aborted and Paused keep it, so a retry or a
// resume in the middle of the waves does not soak the canary again.
func rank(s *nasv1alpha1.RolloutStatus) int {
	switch {
	case s.Phase == nasv1alpha1.PhaseWaves || s.Phase == nasv1alpha1.PhaseComplete || s.Wave != "":
		return 3
	case s.Phase == nasv1alpha1.PhaseAwaitingPromotion:
		return 2
	case s.Phase == nasv1alpha1.PhaseSoaking:
		return 1
	}
	return 0
}

// canary runs the canary stage; true once the rollout may go past it.
func (m *machine) canary() bool {
	c := m.ru.Canary
	if len(m.next.CanaryNodes) == 0 {
		m.next.CanaryNodes = ChooseCanary(c, m.in.Nodes)
	}
	if rank(m.prev) >= 3 {
		return true
	}
	chosen := map[string]bool{}
	for _, name := range m.next.CanaryNodes {
		chosen[name] = true
	}
	hold := func(why string) {
		for _, n := range m.in.Nodes {
			if !chosen[n.Name] {
				m.r.Holds[n.Name] = Hold + why
			}
		}
	}
	// Every canary node in scope is done, and at least one of them really
	// runs an available agent of the update revision: a canary node
	// skipped as unhealthy counts as done, but a canary of skipped nodes
	// only would soak nothing and let the waves take the whole fleet.
	done, scoped, real := true, false, false
	for _, n := range m.in.Nodes {
		if !chosen[n.Name] || !n.InScope {
			continue
		}
		done, scoped = done && n.done(), true
		real = real || n.Update != nil && n.Available && !n.Outdated
	}
	if done && scoped && !real {
		m.enter(nasv1alpha1.PhaseCanary, "")
		hold("canary " + summarize(m.next.CanaryNodes) + " unhealthy: no canary agent runs the update revision")
		return false
	}
	if !done {
		m.enter(nasv1alpha1.PhaseCanary, "")
		hold("canary " + summarize(m.next.CanaryNodes) + " not yet updated and available")
		return false
	}
	// Once promotion was awaited, the soak is behind: the promote verb
	// must not start it again.
	if rank(m.prev) < 2 {
		m.enter(nasv1alpha1.PhaseSoaking, "")
	}
	if end := m.next.PhaseSince.Add(parse(c.Soak)); rank(m.prev) < 2 && m.in.Now.Before(end) {
		m.due(end)
		hold(fmt.Sprintf("canary soak %s left", end.Sub(m.in.Now).Round(time.Second)))
		return false
	}
	if c.Promotion == nasv1alpha1.PromotionManual && m.annotation(nasv1alpha1.AnnotationPromote) != m.in.Revision {
		m.enter(nasv1alpha1.PhaseAwaitingPromotion, "")
		hold("promotion (kubectl nodeagentset rollout promote)")
		return false
	}
	return true
}

// wave is the nodes of one value of waves.by.
type wave struct {
	value string
	nodes []Node
}

// waves runs the waves after the canary: the first wave not done is
// updated; a done wave soaks before the next one starts.
func (m *machine) waves() {
	ws := Waves(m.ru.Waves, m.in.Nodes, m.next.CanaryNodes)
	soak := time.Duration(0)
	if m.ru.Waves != nil {
		soak = parse(m.ru.Waves.Soak)
	}
	prevIndex := slices.IndexFunc(ws, func(w wave) bool { return w.value == m.prev.Wave })
	for i, w := range ws {
		if !slices.ContainsFunc(w.nodes, func(n Node) bool { return n.InScope && !n.done() }) {
			// Waves done before the stored one, or before a Complete
			// rollout, were soaked already: a pass that still sees the
			// rollout running (the cached set a status write behind) must
			// not soak the first wave anew; nodes a lowered partition
			// releases later still go wave by wave.
			if soak == 0 || i == len(ws)-1 || rank(m.prev) == 3 && prevIndex > i || m.prev.Phase == nasv1alpha1.PhaseComplete {
				continue
			}
			m.enter(nasv1alpha1.PhaseSoaking, w.value)
			if end := m.next.PhaseSince.Add(soak); m.in.Now.Before(end) {
				m.due(end)
				m.holdAfter(ws, i, fmt.Sprintf("wave soak of %s, %s left", m.label(w.value), end.Sub(m.in.Now).Round(time.Second)))
				return
			}
			continue
		}
		m.enter(nasv1alpha1.PhaseWaves, w.value)
		m.holdAfter(ws, i, "")
		return
	}
	m.enter(nasv1alpha1.PhaseComplete, "")
}

// holdAfter holds the nodes of the waves after i.
func (m *machine) holdAfter(ws []wave, i int, why string) {
	for _, w := range ws[i+1:] {
		reason := why
		if reason == "" {
			reason = fmt.Sprintf("wave %s after %s", m.label(w.value), m.label(ws[i].value))
		}
		for _, n := range w.nodes {
			m.r.Holds[n.Name] = Hold + reason
		}
	}
}

// label names a wave for people: "zone=b", or "nodes without zone".
func (m *machine) label(value string) string {
	if m.ru.Waves == nil {
		return "rest"
	}
	if value == "" {
		return "nodes without " + string(m.ru.Waves.By)
	}
	return string(m.ru.Waves.By) + "=" + value
}

// Waves groups the nodes after the canary by the value of w.By, sorted,
// nodes without the label last; without waves, one wave of them all.
func Waves(w *nasv1alpha1.Waves, nodes []Node, canary []string) []wave {
	by := map[string][]Node{}
	for _, n := range nodes {
		if slices.Contains(canary, n.Name) {
			continue
		}
		v := ""
		if w != nil {
			v = n.Labels[string(w.By)]
		}
		by[v] = append(by[v], n)
	}
	out := make([]wave, 0, len(by))
	for v, ns := range by {
		out = append(out, wave{value: v, nodes: ns})
	}
	slices.SortFunc(out, func(a, b wave) int {
		if (a.value == "") != (b.value == "") {
			return cmp.Compare(b.value, a.value) // "" last
		}
		return cmp.Compare(a.value, b.value)
	})
	return out
}

// ChooseCanary picks the canary nodes: among the in-scope nodes the
// canary's nodeSelector matches, healthy ones first, round-robin across
// the sorted values of spreadBy (nodes without it as a last value), by
// name within a value. Deterministic, and stored once chosen, so a restart
// or a new leader keeps the same canary.
func ChooseCanary(c *nasv1alpha1.Canary, nodes []Node) []string {
	selector := labels.Everything()
	if c.NodeSelector != nil {
		var err error
		if selector, err = metav1.LabelSelectorAsSelector(c.NodeSelector.AsMeta()); err != nil {
			selector = labels.Nothing()
		}
	}
	var healthy, unhealthy []Node
	for _, n := range nodes {
		if !n.InScope || !selector.Matches(labels.Set(n.Labels)) {
			continue
		}
		if n.Health.Unhealthy() {
			unhealthy = append(unhealthy, n)
		} else {
			healthy = append(healthy, n)
		}
	}
	total := len(healthy) + len(unhealthy)
	want, err := intstr.GetScaledValueFromIntOrPercent(ptr.To(ptr.Deref(c.Nodes, intstr.FromInt32(1))), total, true)
	if err != nil || want < 1 {
		want = 1
	}
	picked := roundRobin(healthy, string(c.SpreadBy), want)
	return append(picked, roundRobin(unhealthy, string(c.SpreadBy), want-len(picked))...)
}

// roundRobin takes up to want nodes, one per spread value in turn.
func roundRobin(nodes []Node, spreadBy string, want int) []string {
	var groups [][]string
	for _, w := range Waves(&nasv1alpha1.Waves{By: nasv1alpha1.LabelKey(spreadBy)}, nodes, nil) {
		names := make([]string, len(w.nodes))
		for i, n := range w.nodes {
			names[i] = n.Name
		}
		slices.Sort(names)
		groups = append(groups, names)
	}
	var out []string
	for round := 0; len(out) < want; round++ {
		took := false
		for _, g := range groups {
			if round < len(g) && len(out) < want {
				out = append(out, g[round])
				took = true
			}
		}
		if !took {
			break
		}
	}
	return out
}

// parse reads a duration the CRD validated; zero when it cannot.
func parse(d nasv1alpha1.Duration) time.Duration {
	v, err := time.ParseDuration(string(d))
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// summarize names up to three nodes.
func summarize(names []string) string {
	if len(names) <= 3 {
		return fmt.Sprint(names)
	}
	return fmt.Sprintf("%v and %d more", names[:3], len(names)-3)
}
