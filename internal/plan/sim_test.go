package plan

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/eligibility"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// The rollout simulation runs the pure planner against a small simulated
// cluster: pods become Ready after random delays, terminate after random
// delays, fail; nodes join, leave, change labels, die (Ready Unknown: their
// pods lose Ready and their deletions never finish) and come back, are
// cordoned and uncordoned, start being deleted; the template changes and
// the rollout is paused and resumed, all in random order. After every
// pass it checks the invariants written above rollout(), and at the end
// that the rollout converges once the world stands still.

type simPod struct {
	pod     *corev1.Pod
	readyAt time.Time // zero: not Ready yet
	goneAt  time.Time // for terminating pods
}

type sim struct {
	rng      *rand.Rand
	now      time.Time
	set      *nasv1alpha1.NodeAgentSet
	hash     string
	hashes   int
	nodes    map[string]*corev1.Node
	pods     map[types.UID]*simPod
	backoff  map[string]time.Time
	seq      int
	passes   int
	maxReady time.Duration
	// dead nodes run nothing: their pods are not Ready and terminating
	// ones stay.
	dead map[string]bool
	cfg  simConfig
	// bad revisions' agents crash-loop (see sim_staged_test.go).
	bad map[string]bool
}

// grace is the simulated pods' termination grace period.
const grace = 3 * time.Second

// simConfig is one rollout configuration under test.
type simConfig struct {
	maxUnavailable, maxSurge, partition intstr.IntOrString
	canary                              bool // rollingUpdate.nodeSelector canary=yes
	onDelete                            bool
	minReady                            int32
	nodes                               int
	wait                                bool // unhealthyNodes: Wait
	stages                              stageKnobs
}

func (c simConfig) String() string {
	return fmt.Sprintf("maxUnavailable=%s maxSurge=%s partition=%s canary=%t onDelete=%t minReady=%d nodes=%d wait=%t",
		c.maxUnavailable.String(), c.maxSurge.String(), c.partition.String(), c.canary, c.onDelete, c.minReady, c.nodes, c.wait) + c.stages.String()
}

// randomConfig draws a valid configuration (the CRD refuses maxUnavailable
// and maxSurge both zero).
func randomConfig(rng *rand.Rand) simConfig {
	budget := func() intstr.IntOrString {
		if rng.IntN(3) == 0 {
			return intstr.FromString(fmt.Sprintf("%d%%", rng.IntN(5)*10))
		}
		return intstr.FromInt(rng.IntN(4))
	}
	c := simConfig{maxUnavailable: budget(), maxSurge: budget(), partition: intstr.FromInt(0),
		minReady: int32(rng.IntN(3)), nodes: 3 + rng.IntN(20), wait: rng.IntN(4) == 0}
	if isZero(c.maxUnavailable) && isZero(c.maxSurge) {
		c.maxUnavailable = intstr.FromInt(1)
	}
	switch rng.IntN(6) {
	case 0:
		c.partition = intstr.FromInt(rng.IntN(4))
	case 1:
		c.partition = intstr.FromString(fmt.Sprintf("%d%%", rng.IntN(6)*10))
	case 2:
		c.canary = true
	case 3:
		c.onDelete = rng.IntN(2) == 0
	}
	c.stages = randomStages(rng)
	return c
}

func isZero(v intstr.IntOrString) bool { return v.String() == "0" || v.String() == "0%" }

func newSim(seed uint64, c simConfig) *sim {
	s := &sim{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: t0,
		nodes: map[string]*corev1.Node{}, pods: map[types.UID]*simPod{}, backoff: map[string]time.Time{},
		maxReady: 5 * time.Second, dead: map[string]bool{}, cfg: c, bad: map[string]bool{},
	}
	s.set = testSet()
	s.set.Spec.MinReadySeconds = c.minReady
	ru := &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(c.maxUnavailable), MaxSurge: ptr.To(c.maxSurge), Partition: ptr.To(c.partition)}
	if c.wait {
		ru.UnhealthyNodes = nasv1alpha1.UnhealthyNodesWait
	}
	c.stages.apply(ru)
	if c.canary {
		ru.NodeSelector = &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"canary": "yes"}}
	}
	s.set.Spec.UpdateStrategy = nasv1alpha1.UpdateStrategy{Type: nasv1alpha1.RollingUpdateStrategy, RollingUpdate: ru}
	if c.onDelete {
		s.set.Spec.UpdateStrategy.Type = nasv1alpha1.OnDeleteStrategy
	}
	s.newTemplate()
	for range c.nodes {
		s.addNode()
	}
	s.startRolled()
	return s
}

func (s *sim) newTemplate() {
	s.hashes++
	s.hash = fmt.Sprintf("rev%d", s.hashes)
	s.maybeBad()
}

// rollback makes the template equal an earlier one again.
func (s *sim) rollback() {
	if s.hashes > 1 {
		s.hash = fmt.Sprintf("rev%d", 1+s.rng.IntN(s.hashes))
	}
}

// settleCurrent plays status: once every desired node runs one available
// agent, of the update revision, and no check has failed, that revision
// becomes the current one.
func (s *sim) settleCurrent(p Plan) {
	if p.Stage.Failed {
		return
	}
	minReady := time.Duration(s.set.Spec.MinReadySeconds) * time.Second
	snap := s.snapshot()
	spec := eligibility.AgentSpec(&s.set.Spec.Template.Spec)
	pods := map[string][]*corev1.Pod{}
	for _, p := range snap.Pods {
		pods[podtemplate.NodeOf(p)] = append(pods[podtemplate.NodeOf(p)], p)
	}
	for _, n := range snap.Nodes {
		if !eligibility.Evaluate(n, spec).ShouldRun {
			continue
		}
		if ps := pods[n.Name]; len(ps) != 1 || podtemplate.Hash(ps[0]) != s.hash || ps[0].DeletionTimestamp != nil ||
			s.set.Status.CurrentRevision != "" && !PodAvailable(ps[0], minReady, s.now) {
			return
		}
	}
	s.set.Status.CurrentRevision = s.set.Name + "-" + s.hash
}

func (s *sim) addNode() {
	s.seq++
	n := mkNode(fmt.Sprintf("n%03d", s.seq), s.rng.IntN(8) != 0)
	if s.rng.IntN(3) == 0 {
		n.Labels["canary"] = "yes"
	}
	s.zone(n)
	s.nodes[n.Name] = n
}

// snapshot is the world as the controller's cache would show it.
func (s *sim) snapshot() Snapshot {
	var nodes []*corev1.Node
	for _, n := range s.nodes {
		nodes = append(nodes, n)
	}
	var pods []*corev1.Pod
	for _, sp := range s.pods {
		p := sp.pod.DeepCopy()
		if !sp.readyAt.IsZero() && !s.now.Before(sp.readyAt) && p.Status.Phase == corev1.PodRunning && !s.dead[p.Spec.NodeName] {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(sp.readyAt)}}
		}
		s.crashLoop(p)
		pods = append(pods, p)
	}
	snap := snapshot(nodes, pods, s.backoff)
	snap.Set, snap.UpdateHash, snap.Now = s.set, s.hash, s.now
	return snap
}

// apply carries a plan out the way the executor and the API server would.
func (s *sim) apply(p Plan) {
	for _, d := range p.Deletes {
		sp := s.pods[d.Pod.UID]
		switch {
		case sp == nil:
		case d.Now:
			delete(s.pods, d.Pod.UID)
		case sp.pod.DeletionTimestamp == nil:
			sp.pod.DeletionTimestamp = ptr.To(metav1.NewTime(s.now.Add(grace)))
			sp.goneAt = s.now.Add(time.Duration(s.rng.Int64N(int64(grace))))
		}
		if d.Finished {
			s.backoff[d.Node] = s.now.Add(time.Second)
		}
	}
	for _, c := range p.Creates {
		s.seq++
		pod := mkPod(fmt.Sprintf("p%05d", s.seq), c.Node, 0, phase(corev1.PodRunning))
		pod.CreationTimestamp = metav1.NewTime(s.now)
		pod.Labels[nasv1alpha1.LabelRevisionHash] = cmp.Or(c.Revision, s.hash)
		s.pods[pod.UID] = &simPod{pod: pod, readyAt: s.now.Add(time.Duration(s.rng.Int64N(int64(s.maxReady))))}
	}
}

// advance moves the clock and lets terminating pods go.
func (s *sim) advance(d time.Duration) {
	s.now = s.now.Add(d)
	for uid, sp := range s.pods {
		if sp.pod.DeletionTimestamp != nil && !s.now.Before(sp.goneAt) && !s.dead[sp.pod.Spec.NodeName] {
			delete(s.pods, uid)
		}
	}
}

// chaos does one random thing to the world that is not the controller.
func (s *sim) chaos(allowTemplateChange bool) {
	live := s.livePods()
	switch r := s.rng.IntN(100); {
	case r < 5:
		s.addNode()
	case r < 8 && len(s.nodes) > 2:
		delete(s.nodes, s.randomNode())
	case r < 12:
		n := s.nodes[s.randomNode()]
		if n.Labels["agent"] == "yes" {
			delete(n.Labels, "agent")
		} else {
			n.Labels["agent"] = "yes"
		}
	case r < 18 && len(live) > 0:
		live[s.rng.IntN(len(live))].pod.Status.Phase = corev1.PodFailed
	case r < 21 && len(live) > 0: // someone deletes a pod
		sp := live[s.rng.IntN(len(live))]
		sp.pod.DeletionTimestamp = ptr.To(metav1.NewTime(s.now))
		sp.goneAt = s.now
	case r < 22 && len(live) > 0: // a kubelet restart resets a pod's Ready time
		if sp := live[s.rng.IntN(len(live))]; !sp.readyAt.IsZero() && !s.now.Before(sp.readyAt) {
			sp.readyAt = s.now
		}
	case r < 24 && allowTemplateChange:
		if s.rng.IntN(3) == 0 {
			s.rollback()
		} else {
			s.newTemplate()
		}
	case r < 28:
		if ru := s.set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			ru.Paused = !ru.Paused
		}
	case r < 31:
		s.kill(s.randomNode())
	case r < 34:
		s.revive(s.randomNode())
	case r < 36:
		n := s.nodes[s.randomNode()]
		n.Spec.Unschedulable = !n.Spec.Unschedulable
	case r < 37: // the node is deleted a little later (case r < 8)
		s.nodes[s.randomNode()].DeletionTimestamp = ptr.To(metav1.NewTime(s.now))
	case r < 45:
		s.verbs(r)
	}
}

// kill plays a node whose kubelet stops: Ready Unknown from now.
func (s *sim) kill(name string) {
	if s.dead[name] {
		return
	}
	s.dead[name] = true
	s.nodes[name].Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(s.now)}}
}

// revive brings a dead node back: Ready again, its pods Ready after a
// delay, its terminating pods gone after one.
func (s *sim) revive(name string) {
	if !s.dead[name] {
		return
	}
	delete(s.dead, name)
	s.nodes[name].Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(s.now)}}
	for _, sp := range s.pods {
		if sp.pod.Spec.NodeName != name {
			continue
		}
		sp.readyAt = s.now.Add(time.Duration(s.rng.Int64N(int64(s.maxReady))))
		if sp.pod.DeletionTimestamp != nil {
			sp.goneAt = sp.readyAt
		}
	}
}

// heal makes every node healthy: revived, uncordoned, and a node being
// deleted gone.
func (s *sim) heal() {
	for _, name := range slices.Sorted(maps.Keys(s.nodes)) {
		s.revive(name)
		s.nodes[name].Spec.Unschedulable = false
		if s.nodes[name].DeletionTimestamp != nil {
			delete(s.nodes, name)
		}
	}
}

// skips: the set's rollout passes unhealthy nodes by.
func (s *sim) skips() bool {
	return s.set.Spec.UpdateStrategy.RollingUpdate.UnhealthyNodes != nasv1alpha1.UnhealthyNodesWait
}

func (s *sim) randomNode() string {
	names := make([]string, 0, len(s.nodes))
	for n := range s.nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names[s.rng.IntN(len(names))]
}

func (s *sim) livePods() []*simPod {
	var out []*simPod
	for _, sp := range s.pods {
		if sp.pod.DeletionTimestamp == nil && sp.pod.Status.Phase != corev1.PodFailed {
			out = append(out, sp)
		}
	}
	slices.SortFunc(out, func(a, b *simPod) int { return strings.Compare(a.pod.Name, b.pod.Name) })
	return out
}

// pass runs the planner once, checks the invariants against the world
// before and after, and applies the plan.
func (s *sim) pass() error {
	s.passes++
	snap := s.snapshot()
	p := Compute(snap)
	before := measure(snap, s.hash, s.skips())
	if err := s.checkPlan(snap, p); err != nil {
		return err
	}
	if err := s.checkStage(snap, p); err != nil {
		return err
	}
	s.apply(p)
	s.feed(p)
	s.settleCurrent(p)
	after := measure(s.snapshot(), s.hash, s.skips())
	b := p.Rollout
	switch {
	case after.unavailable > max(b.MaxUnavailable, before.unavailable):
		return fmt.Errorf("%d desired nodes without an available agent after the pass (before %d, maxUnavailable %d)",
			after.unavailable, before.unavailable, b.MaxUnavailable)
	case after.surging > max(b.MaxSurge, before.surging):
		return fmt.Errorf("%d nodes run an old and a new agent after the pass (before %d, maxSurge %d)",
			after.surging, before.surging, b.MaxSurge)
	case after.crowded != "":
		return fmt.Errorf("node %s holds more than two pods", after.crowded)
	case after.twins != "":
		return fmt.Errorf("node %s runs two live pods of one revision", after.twins)
	}
	return nil
}

// checkPlan checks the plan's deletes and creates against scope and pause.
func (s *sim) checkPlan(snap Snapshot, p Plan) error {
	st := map[string]NodeState{}
	for _, n := range p.Nodes {
		st[n.Name] = n
	}
	ru := s.set.Spec.UpdateStrategy.RollingUpdate
	frozen := ru.Paused || s.set.Spec.UpdateStrategy.Type == nasv1alpha1.OnDeleteStrategy
	held := s.outOfScope(snap, p.Rollout.Partition)
	minReady := time.Duration(s.set.Spec.MinReadySeconds) * time.Second
	before := measure(snap, s.hash, s.skips())
	nodes := map[string]*corev1.Node{}
	for _, n := range snap.Nodes {
		nodes[n.Name] = n
	}
	readyDeleted := 0
	for _, d := range p.Deletes {
		n := st[d.Node]
		isUpdate := n.Exists && n.Eligibility.ShouldContinueRunning && d.Pod.DeletionTimestamp == nil &&
			d.Pod.Status.Phase == corev1.PodRunning && podtemplate.Hash(d.Pod) != s.hash && n.Old != nil && n.Old.UID == d.Pod.UID
		surgeDone := n.New != nil && PodAvailable(n.New, minReady, s.now)
		if _, ready := ReadySince(d.Pod); isUpdate && ready && !surgeDone {
			// Invariant 1: a Ready old agent, available or not, is charged.
			readyDeleted++
			if p.Rollout.MaxSurge > 0 {
				return fmt.Errorf("maxSurge %d, yet Ready old agent %s on %s deleted before its replacement was available: %s",
					p.Rollout.MaxSurge, d.Pod.Name, d.Node, d.Reason)
			}
		}
		if isUpdate && frozen && !surgeDone {
			return fmt.Errorf("paused/OnDelete, yet old agent %s on %s deleted: %s", d.Pod.Name, d.Node, d.Reason)
		}
		if isUpdate && held[d.Node] && !surgeDone {
			return fmt.Errorf("node %s is out of the rollout's scope, yet its old agent was deleted: %s", d.Node, d.Reason)
		}
		// Invariant 7: a node unhealthy before the rollout reached it is
		// skipped.
		if isUpdate && n.New == nil && s.skips() && unhealthy(nodes[d.Node]) {
			return fmt.Errorf("node %s is unhealthy and skipped, yet its old agent was deleted: %s", d.Node, d.Reason)
		}
	}
	if readyDeleted > 0 && before.unavailable+readyDeleted > p.Rollout.MaxUnavailable {
		return fmt.Errorf("%d Ready old agents deleted with %d desired nodes already without an available agent (maxUnavailable %d)",
			readyDeleted, before.unavailable, p.Rollout.MaxUnavailable)
	}
	if kept, was := s.outdatedAfter(snap, p), s.outdatedAfter(snap, Plan{}); kept < min(p.Rollout.Partition, was) {
		return fmt.Errorf("partition %d: only %d nodes keep the current revision's agent after the pass (before %d)",
			p.Rollout.Partition, kept, was)
	}
	for _, c := range p.Creates {
		if n := st[c.Node]; n.Old != nil && !slices.ContainsFunc(p.Deletes, func(d Delete) bool { return d.Pod.UID == n.Old.UID }) {
			if frozen {
				return fmt.Errorf("paused/OnDelete, yet a surge agent was created on %s", c.Node)
			}
			if held[c.Node] && !p.Stage.Abort { // an abort puts back nodes out of scope too
				return fmt.Errorf("node %s is out of scope, yet a surge agent was created", c.Node)
			}
		}
	}
	return nil
}

// outOfScope recomputes, independently of the planner, the desired nodes
// partition and the canary selector keep on their revision: partition
// holds the last nodes by name among those still running only an older
// agent.
func (s *sim) outOfScope(snap Snapshot, partition int) map[string]bool {
	spec := eligibility.AgentSpec(&s.set.Spec.Template.Spec)
	revs := map[string]map[bool]bool{} // node -> has new / has old live agent
	for _, p := range snap.Pods {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		n := podtemplate.NodeOf(p)
		if revs[n] == nil {
			revs[n] = map[bool]bool{}
		}
		revs[n][podtemplate.Hash(p) == s.hash] = true
	}
	onCurrent := map[string]bool{}
	current := strings.TrimPrefix(s.set.Status.CurrentRevision, s.set.Name+"-")
	for _, p := range snap.Pods {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && (current == "" || podtemplate.Hash(p) == current) {
			onCurrent[podtemplate.NodeOf(p)] = true
		}
	}
	var outdated []string
	out := map[string]bool{}
	canary := s.set.Spec.UpdateStrategy.RollingUpdate.NodeSelector
	for _, n := range snap.Nodes {
		if !eligibility.Evaluate(n, spec).ShouldRun {
			continue
		}
		if revs[n.Name][false] && !revs[n.Name][true] && onCurrent[n.Name] {
			outdated = append(outdated, n.Name)
		}
		if canary != nil && s.nodes[n.Name].Labels["canary"] != "yes" {
			out[n.Name] = true
		}
	}
	sort.Strings(outdated)
	for _, name := range outdated[max(0, len(outdated)-partition):] {
		out[name] = true
	}
	return out
}

type measures struct {
	unavailable, surging int
	crowded, twins       string
}

// unhealthy is an independent reading of the nodes the simulation makes
// unhealthy (dead, cordoned, being deleted).
func unhealthy(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			return true
		}
	}
	return n.Spec.Unschedulable || n.DeletionTimestamp != nil
}

// unhealthySince is when a dead or deleting node turned unhealthy, the
// earlier of the two when both (a node being deleted that dies later was
// unhealthy from its deletion on), zero for a cordon (which carries no
// time).
func unhealthySince(n *corev1.Node) time.Time {
	var since time.Time
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			since = c.LastTransitionTime.Time
		}
	}
	if d := n.DeletionTimestamp; d != nil && (since.IsZero() || d.Time.Before(since)) {
		since = d.Time
	}
	return since
}

// measure reads the rollout's state off a snapshot, independently of the
// planner's own bookkeeping. With skip, an unhealthy node counts as
// unavailable only when it is charged: its agent of the update revision,
// not available, is older than the node's trouble.
func measure(snap Snapshot, hash string, skip bool) measures {
	var m measures
	spec := eligibility.AgentSpec(&snap.Set.Spec.Template.Spec)
	minReady := time.Duration(snap.Set.Spec.MinReadySeconds) * time.Second
	byNode := map[string][]*corev1.Pod{}
	for _, p := range snap.Pods {
		byNode[podtemplate.NodeOf(p)] = append(byNode[podtemplate.NodeOf(p)], p)
	}
	for _, n := range snap.Nodes {
		pods := byNode[n.Name]
		sick := skip && unhealthy(n)
		stuck := 0
		for _, p := range pods {
			// Pods past their grace period on a node that was unhealthy do
			// not count: the planner may have placed an agent beside them.
			if skip && p.DeletionTimestamp != nil && snap.Now.After(p.DeletionTimestamp.Time) {
				stuck++
			}
		}
		if len(pods)-stuck > 2 {
			m.crowded = n.Name
		}
		available, hasNew, hasOld, charged := false, false, false, false
		revs := map[string]int{}
		for _, p := range pods {
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				continue
			}
			available = available || PodAvailable(p, minReady, snap.Now)
			hasNew = hasNew || podtemplate.Hash(p) == hash
			hasOld = hasOld || podtemplate.Hash(p) != hash
			since := unhealthySince(n)
			charged = charged || podtemplate.Hash(p) == hash && !PodAvailable(p, minReady, snap.Now) &&
				!since.IsZero() && !since.Before(p.CreationTimestamp.Time)
			if revs[podtemplate.Hash(p)]++; revs[podtemplate.Hash(p)] > 1 {
				m.twins = n.Name
			}
		}
		if eligibility.Evaluate(n, spec).ShouldRun && (!sick || charged) {
			if !available {
				m.unavailable++
			}
			if hasNew && hasOld {
				m.surging++
			}
		}
	}
	return m
}

// converged: every desired node runs one available agent, of the update
// revision unless the rollout leaves it out (scope, OnDelete); no other
// node runs one, and nothing is terminating.
func (s *sim) converged() (bool, string) { return s.convergedBut(nil) }

// convergedBut is converged, ignoring the nodes named.
func (s *sim) convergedBut(ignore map[string]bool) (bool, string) {
	snap := s.snapshot()
	p := Compute(snap)
	held := s.outOfScope(snap, p.Rollout.Partition)
	minReady := time.Duration(s.set.Spec.MinReadySeconds) * time.Second
	onDelete := s.set.Spec.UpdateStrategy.Type == nasv1alpha1.OnDeleteStrategy
	for _, n := range p.Nodes {
		switch {
		case ignore[n.Name]:
		case n.Terminating > 0 || len(n.Finished) > 0:
			return false, n.Name + " has terminating or finished pods"
		case !n.Eligibility.ShouldRun && n.New != nil:
			return false, n.Name + " is not desired but runs a new agent"
		case !n.Eligibility.ShouldRun:
		case len(n.Active) != 1 || !PodAvailable(n.Active[0], minReady, s.now):
			return false, fmt.Sprintf("%s has %d active pods, not one available", n.Name, len(n.Active))
		case n.New == nil && !held[n.Name] && !onDelete:
			return false, n.Name + " is in scope but runs an old agent"
		}
	}
	for _, c := range p.Creates {
		if !ignore[c.Node] {
			return false, "plan creates on " + c.Node
		}
	}
	for _, d := range p.Deletes {
		if !ignore[d.Node] {
			return false, "plan deletes on " + d.Node
		}
	}
	return true, ""
}

// run plays steps random events, then lets the world stand still and
// requires convergence within a bounded number of passes.
func (s *sim) run(steps int) error {
	for i := range steps {
		if s.rng.IntN(3) == 0 {
			if err := s.pass(); err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
		}
		s.chaos(i%50 == 0 || s.rng.IntN(100) == 0)
		s.advance(time.Duration(s.rng.IntN(800)) * time.Millisecond)
	}
	if ru := s.set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		ru.Paused = false
	}
	// Stages may hold the healthy nodes for a promotion or a failed check
	// (by design), so the promise of settleAroundUnhealthy is not theirs.
	if !s.cfg.stages.on() {
		if err := s.settleAroundUnhealthy(); err != nil {
			return err
		}
	}
	s.heal()
	if err := s.settleStaged(); err != nil {
		return err
	}
	for i := range 2000 {
		if err := s.pass(); err != nil {
			return fmt.Errorf("settling pass %d: %w", i, err)
		}
		s.advance(500 * time.Millisecond)
		if ok, _ := s.converged(); ok {
			return nil
		}
	}
	_, why := s.converged()
	return fmt.Errorf("did not converge after the world stood still: %s", why)
}

// settleAroundUnhealthy lets the world stand still with its unhealthy
// nodes still unhealthy: with Skip, the rollout must then complete on every
// healthy node, unless a charged node holds the budget (an agent that may
// have broken its node must stop the rollout). With Wait nothing is
// promised while nodes are unhealthy.
func (s *sim) settleAroundUnhealthy() error {
	sick := map[string]bool{}
	for name, n := range s.nodes {
		if unhealthy(n) {
			sick[name] = true
		}
	}
	if !s.skips() || len(sick) == 0 || s.chargedCount(s.snapshot()) > 0 {
		return nil
	}
	for i := range 2000 {
		if err := s.pass(); err != nil {
			return fmt.Errorf("settling pass %d with unhealthy nodes: %w", i, err)
		}
		s.advance(500 * time.Millisecond)
		if ok, _ := s.convergedBut(sick); ok {
			return nil
		}
	}
	_, why := s.convergedBut(sick)
	return fmt.Errorf("did not converge on the healthy nodes while unhealthy ones stayed so: %s", why)
}

// chargedCount counts unhealthy nodes whose unavailable update-revision
// agent predates the node's trouble.
func (s *sim) chargedCount(snap Snapshot) int {
	minReady := time.Duration(s.set.Spec.MinReadySeconds) * time.Second
	n := 0
	for _, node := range snap.Nodes {
		if !unhealthy(node) {
			continue
		}
		since := unhealthySince(node)
		for _, p := range snap.Pods {
			if podtemplate.NodeOf(p) == node.Name && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning &&
				podtemplate.Hash(p) == s.hash && !PodAvailable(p, minReady, snap.Now) &&
				!since.IsZero() && !since.Before(p.CreationTimestamp.Time) {
				n++
				break
			}
		}
	}
	return n
}

// outdatedAfter counts the desired nodes that would still run only an
// agent of the current revision (or of any older one before the first
// rollout completed) once p is carried out.
func (s *sim) outdatedAfter(snap Snapshot, p Plan) int {
	gone := map[types.UID]bool{}
	for _, d := range p.Deletes {
		gone[d.Pod.UID] = true
	}
	fresh := map[string]bool{}
	for _, c := range p.Creates {
		fresh[c.Node] = true
	}
	spec := eligibility.AgentSpec(&s.set.Spec.Template.Spec)
	current := strings.TrimPrefix(s.set.Status.CurrentRevision, s.set.Name+"-")
	hasOld, hasNew := map[string]bool{}, map[string]bool{}
	for _, pod := range snap.Pods {
		if gone[pod.UID] || pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
			continue
		}
		switch h := podtemplate.Hash(pod); {
		case h == s.hash:
			hasNew[podtemplate.NodeOf(pod)] = true
		case current == "" || h == current:
			hasOld[podtemplate.NodeOf(pod)] = true
		}
	}
	n := 0
	for _, node := range snap.Nodes {
		if eligibility.Evaluate(node, spec).ShouldRun && hasOld[node.Name] && !hasNew[node.Name] && !fresh[node.Name] {
			n++
		}
	}
	return n
}
