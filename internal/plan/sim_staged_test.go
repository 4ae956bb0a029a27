package plan

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/stages"
)

// The simulation of staged rollouts (canary, waves, health): nodes carry a
// zone label (a, b, c or none), some templates are bad (their agents
// crash-loop: never Ready, restart count rising by one a second), the
// promote, retry and abort verbs come at random, status.rollout is fed
// back as the controller's status write would. After every pass it checks,
// beside the rollout's own invariants:
//
//   - no node outside the current stage starts an update (a replacement
//     or a surge toward the update revision): before the canary is soaked
//     and promoted only canary nodes, then only the zones up to the wave
//     being updated; and, read from the pods alone, no node of a zone
//     starts while an in-scope healthy node of an earlier zone lacks an
//     available agent of the update revision;
//   - while a check has failed, nothing of the update revision is
//     created, and with Pause no agent of the current revision is taken
//     down;
//
// and at the end, that an aborted rollout leaves every (healed) node on
// the current revision, and that a good template then rolls out to the end.

// stageKnobs is the staged part of a configuration.
type stageKnobs struct {
	canary       int // canary.nodes; 0: no canary
	spread       bool
	soak         time.Duration
	manual       bool
	waves        bool
	health       bool // maxRestarts 2 (bad templates appear)
	abort        bool // failureAction Abort
	waveSoakHalf bool // waves.soak is half the canary soak
}

func (k stageKnobs) on() bool { return k.canary > 0 || k.waves || k.health }

func (k stageKnobs) String() string {
	if !k.on() {
		return ""
	}
	return fmt.Sprintf(" stages{canary=%d spread=%t soak=%v manual=%t waves=%t health=%t abort=%t}",
		k.canary, k.spread, k.soak, k.manual, k.waves, k.health, k.abort)
}

// randomStages draws the staged part; half the configurations have none.
func randomStages(rng *rand.Rand) stageKnobs {
	if rng.IntN(2) == 0 {
		return stageKnobs{}
	}
	return stageKnobs{canary: rng.IntN(4), spread: rng.IntN(2) == 0, soak: time.Duration(rng.IntN(4)) * time.Second,
		manual: rng.IntN(2) == 0, waves: rng.IntN(2) == 0, health: rng.IntN(3) != 0, abort: rng.IntN(2) == 0,
		waveSoakHalf: rng.IntN(2) == 0}
}

// decodeStages reads 9 fuzzed bits: 2 canary nodes, 1 spread, 2 soak
// seconds, 1 Manual, 1 waves, 1 health, 1 Abort.
func decodeStages(take func(bits uint) int) stageKnobs {
	return stageKnobs{canary: take(2), spread: take(1) == 1, soak: time.Duration(take(2)) * time.Second,
		manual: take(1) == 1, waves: take(1) == 1, health: take(1) == 1, abort: take(1) == 1, waveSoakHalf: true}
}

func (k stageKnobs) apply(ru *nasv1alpha1.RollingUpdate) {
	if k.canary > 0 {
		ru.Canary = &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt(k.canary)), Soak: nasv1alpha1.Duration(k.soak.String()),
			Promotion: nasv1alpha1.PromotionAuto}
		if k.spread {
			ru.Canary.SpreadBy = "zone"
		}
		if k.manual {
			ru.Canary.Promotion = nasv1alpha1.PromotionManual
		}
	}
	if k.waves {
		soak := time.Duration(0)
		if k.waveSoakHalf {
			soak = k.soak / 2
		}
		ru.Waves = &nasv1alpha1.Waves{By: "zone", Soak: nasv1alpha1.Duration(soak.String())}
	}
	if k.health {
		ru.Health = &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](2), FailureAction: nasv1alpha1.FailurePause}
		if k.abort {
			ru.Health.FailureAction = nasv1alpha1.FailureAbort
		}
	}
}

// maybeBad makes the new template a crash-looping one, at times, once a
// revision is current (the first fan-out is no staged rollout, and its
// agents being bad would leave nothing to fall back to), and not under
// OnDelete, which replaces nothing, so a crash-looping agent would stay.
func (s *sim) maybeBad() {
	if s.cfg.stages.health && !s.cfg.onDelete && s.set.Status.CurrentRevision != "" && s.rng.IntN(3) == 0 {
		s.bad[s.hash] = true
	}
}

// zone labels a new node a, b, c or not at all.
func (s *sim) zone(n *corev1.Node) {
	if !s.cfg.stages.on() {
		return
	}
	if z := s.rng.IntN(4); z < 3 {
		n.Labels["zone"] = string(rune('a' + z))
	}
}

// crashLoop plays the kubelet of an agent of a bad revision: running, not
// Ready, restarted once a second since it was created.
func (s *sim) crashLoop(p *corev1.Pod) {
	if !s.bad[podtemplate.Hash(p)] || p.Status.Phase != corev1.PodRunning {
		return
	}
	p.Status.Conditions = nil
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", RestartCount: int32(s.now.Sub(p.CreationTimestamp.Time) / time.Second),
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
}

func (s *sim) revisionName() string { return s.set.Name + "-" + s.hash }

// verbs plays a person with kubectl nodeagentset rollout promote, retry
// and abort (r is the chaos draw, 37 to 99).
func (s *sim) verbs(r int) {
	if !s.cfg.stages.on() {
		return
	}
	ann := s.set.Annotations
	if ann == nil {
		ann = map[string]string{}
		s.set.Annotations = ann
	}
	ro := s.set.Status.Rollout
	switch {
	case r < 42:
		ann[nasv1alpha1.AnnotationPromote] = s.revisionName()
	case r < 44 && ro != nil && ro.Failure != nil && ro.PhaseSince != nil:
		ann[nasv1alpha1.AnnotationRetry] = stages.RetryValue(s.revisionName(), ro.PhaseSince.Time)
		delete(ann, nasv1alpha1.AnnotationAbort)
	case r == 44:
		ann[nasv1alpha1.AnnotationAbort] = s.revisionName()
	}
}

// startsUpdate lists the nodes where p starts an update toward the update
// revision: an old live agent deleted with no agent of the update revision
// there, or an agent of the update revision created beside an old one.
func (s *sim) startsUpdate(snap Snapshot, p Plan) []string {
	live := map[string][]*corev1.Pod{}
	for _, pod := range snap.Pods {
		if pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning {
			live[podtemplate.NodeOf(pod)] = append(live[podtemplate.NodeOf(pod)], pod)
		}
	}
	hasUpdate := func(n string) bool {
		return slices.ContainsFunc(live[n], func(q *corev1.Pod) bool { return podtemplate.Hash(q) == s.hash })
	}
	hasOld := func(n string) bool {
		return slices.ContainsFunc(live[n], func(q *corev1.Pod) bool { return podtemplate.Hash(q) != s.hash })
	}
	var out []string
	for _, d := range p.Deletes {
		if d.Pod.DeletionTimestamp == nil && d.Pod.Status.Phase == corev1.PodRunning && podtemplate.Hash(d.Pod) != s.hash &&
			!hasUpdate(d.Node) && slices.ContainsFunc(p.Creates, func(c Create) bool { return c.Node == d.Node && c.Revision == "" }) {
			out = append(out, d.Node)
		}
	}
	for _, c := range p.Creates {
		if c.Revision == "" && hasOld(c.Node) && !slices.Contains(out, c.Node) {
			out = append(out, c.Node)
		}
	}
	return out
}

// zoneBefore orders wave values: sorted, no zone last.
func zoneBefore(a, b string) bool { return a != b && (b == "" || a != "" && a < b) }

// checkStage checks the plan against the stage it was made in.
func (s *sim) checkStage(snap Snapshot, p Plan) error {
	r := p.Stage.Status
	if r == nil {
		return nil
	}
	current := snap.currentHash()
	if p.Stage.Failed {
		for _, c := range p.Creates {
			if current != "" && cmp.Or(c.Revision, s.hash) != current {
				return fmt.Errorf("rollout %s failed (%+v), yet an agent of %s was created on %s", r.Phase, r.Failure, cmp.Or(c.Revision, s.hash), c.Node)
			}
		}
		for _, d := range p.Deletes {
			if n := s.nodes[d.Node]; !p.Stage.Abort && d.Pod.DeletionTimestamp == nil && d.Pod.Status.Phase == corev1.PodRunning &&
				podtemplate.Hash(d.Pod) == current && n != nil && n.Labels["agent"] == "yes" && n.DeletionTimestamp == nil && !slices.ContainsFunc(p.Creates, func(c Create) bool { return c.Node == d.Node }) {
				if _, ready := ReadySince(d.Pod); ready {
					return fmt.Errorf("rollout paused by a failed check, yet the Ready agent %s of the current revision on %s was deleted: %s", d.Pod.Name, d.Node, d.Reason)
				}
			}
		}
		return nil
	}
	ru := s.set.Spec.UpdateStrategy.RollingUpdate
	past := r.Phase == nasv1alpha1.PhaseWaves || r.Phase == nasv1alpha1.PhaseComplete || r.Phase == nasv1alpha1.PhaseSoaking && r.Wave != ""
	held := s.outOfScope(snap, p.Rollout.Partition)
	for _, n := range s.startsUpdate(snap, p) {
		node := s.nodes[n]
		if node == nil || slices.Contains(r.CanaryNodes, n) {
			continue
		}
		zone := node.Labels["zone"]
		promoted := s.set.Annotations[nasv1alpha1.AnnotationPromote] == s.revisionName()
		switch {
		case ru.Canary != nil && ru.Canary.Promotion == nasv1alpha1.PromotionManual && !promoted && r.Phase != nasv1alpha1.PhaseComplete:
			// Read from the verb, not the phase: a stage machine that
			// skipped its canary would say so in the phase too.
			return fmt.Errorf("phase %s: node %s updated with no promote given for %s (canary %v)", r.Phase, n, s.revisionName(), r.CanaryNodes)
		case ru.Canary != nil && !past:
			return fmt.Errorf("phase %s: node %s updated before the canary %v was soaked and promoted", r.Phase, n, r.CanaryNodes)
		case ru.Waves != nil && r.Phase != nasv1alpha1.PhaseComplete && zoneBefore(r.Wave, zone):
			return fmt.Errorf("phase %s wave %q: node %s of zone %q updated outside the wave", r.Phase, r.Wave, n, zone)
		case ru.Waves != nil && r.Phase != nasv1alpha1.PhaseComplete:
			// Complete: the revision went through its stages (or is the
			// current one), and an agent of an older revision left on a
			// node that becomes desired again is replaced as any.
			if lag := s.unfinished(snap, held, r.CanaryNodes, zone); lag != "" {
				return fmt.Errorf("phase %s wave %q: node %s of zone %q updated while %s", r.Phase, r.Wave, n, zone, lag)
			}
		}
	}
	return nil
}

// unfinished names an in-scope, healthy, desired non-canary node of a zone
// before zone that lacks an available agent of the update revision.
func (s *sim) unfinished(snap Snapshot, held map[string]bool, canary []string, zone string) string {
	minReady := time.Duration(s.set.Spec.MinReadySeconds) * time.Second
	for _, n := range snap.Nodes {
		z := n.Labels["zone"]
		if !zoneBefore(z, zone) || held[n.Name] || unhealthy(n) || slices.Contains(canary, n.Name) || n.Labels["agent"] != "yes" {
			continue
		}
		if !slices.ContainsFunc(snap.Pods, func(q *corev1.Pod) bool {
			return podtemplate.NodeOf(q) == n.Name && podtemplate.Hash(q) == s.hash && q.DeletionTimestamp == nil && PodAvailable(q, minReady, snap.Now)
		}) {
			return fmt.Sprintf("node %s of zone %q has no available agent of the update revision", n.Name, z)
		}
	}
	return ""
}

// settleStaged, with the world healed and standing still: a bad template
// is aborted and must end with every node on the current revision, then
// replaced by a good one; a failed check of a good one is retried; the
// canary is promoted.
func (s *sim) settleStaged() error {
	if !s.cfg.stages.on() {
		return nil
	}
	s.set.Annotations = map[string]string{nasv1alpha1.AnnotationPromote: s.revisionName()}
	if s.bad[s.hash] && s.set.Status.CurrentRevision != "" {
		s.set.Annotations[nasv1alpha1.AnnotationAbort] = s.revisionName()
		current := strings.TrimPrefix(s.set.Status.CurrentRevision, s.set.Name+"-")
		var why string
		for i := range 2000 {
			if err := s.pass(); err != nil {
				return fmt.Errorf("aborting pass %d: %w", i, err)
			}
			s.advance(500 * time.Millisecond)
			var ok bool
			if ok, why = s.allOn(current); ok {
				break
			}
		}
		if why != "" {
			return fmt.Errorf("the aborted rollout of %s did not end with every node on the current revision %s: %s", s.hash, current, why)
		}
		s.newTemplate()
		delete(s.bad, s.hash)
		s.set.Annotations = map[string]string{nasv1alpha1.AnnotationPromote: s.revisionName()}
	}
	if ro := s.set.Status.Rollout; ro != nil && ro.Failure != nil && ro.PhaseSince != nil && ro.Revision == s.revisionName() {
		s.set.Annotations[nasv1alpha1.AnnotationRetry] = stages.RetryValue(ro.Revision, ro.PhaseSince.Time)
	}
	return nil
}

// allOn: every desired node runs one available agent, of revision hash,
// and nothing else.
func (s *sim) allOn(hash string) (bool, string) {
	snap := s.snapshot()
	minReady := time.Duration(s.set.Spec.MinReadySeconds) * time.Second
	for _, n := range snap.Nodes {
		var pods []*corev1.Pod
		for _, q := range snap.Pods {
			if podtemplate.NodeOf(q) == n.Name {
				pods = append(pods, q)
			}
		}
		if n.Labels["agent"] != "yes" {
			continue
		}
		if len(pods) != 1 || podtemplate.Hash(pods[0]) != hash || !PodAvailable(pods[0], minReady, snap.Now) {
			names := make([]string, 0, len(pods))
			for _, q := range pods {
				names = append(names, q.Name+"@"+podtemplate.Hash(q))
			}
			return false, fmt.Sprintf("node %s runs %v (rollout %+v)", n.Name, names, s.set.Status.Rollout)
		}
	}
	return true, ""
}

// feed writes the stage back as the controller's status write does.
func (s *sim) feed(p Plan) {
	if p.Stage.Status != nil {
		s.set.Status.Rollout = p.Stage.Status.DeepCopy()
	}
}

// startRolled begins a staged configuration where its stages matter:
// every eligible node runs an available agent of a first, current
// revision, and a second template is out (which may be bad). Without it
// most runs would spend their steps in the first fan-out, which has no
// stages.
func (s *sim) startRolled() {
	if !s.cfg.stages.on() {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(s.nodes)) {
		if s.nodes[name].Labels["agent"] != "yes" {
			continue
		}
		s.seq++
		pod := mkPod(fmt.Sprintf("p%05d", s.seq), name, time.Hour, phase(corev1.PodRunning))
		pod.Labels[nasv1alpha1.LabelRevisionHash] = s.hash
		s.pods[pod.UID] = &simPod{pod: pod, readyAt: s.now.Add(-time.Hour)}
	}
	s.set.Status.CurrentRevision = s.revisionName()
	s.newTemplate()
}
