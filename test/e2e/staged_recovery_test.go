package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	kstatusv1 "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// stagedEnv is TestStagedRolloutRecovery's cluster: 30 nodes in zones
// a, b and c, the manager, and its zones by node.
type stagedEnv struct {
	*rolloutEnv
	zones map[string]string
}

// TestStagedRolloutRecovery runs the staged-rollout scenarios that need a
// manager crash, a dead node or the failure verbs, one cluster for all:
// SIGKILL in every stage, a node going NotReady under a canary, Abort and
// retry, and a transient failure retried to completion. The node-killing
// scenario runs last: its dead node stays dead.
func TestStagedRolloutRecovery(t *testing.T) {
	env, zones := zonedCluster(t)
	e := &stagedEnv{rolloutEnv: env, zones: zones}
	t.Run("ManagerKilledInEveryStage", e.killedInEveryStage)
	t.Run("AbortThenRetry", e.abortThenRetry)
	t.Run("TransientFailureRetried", e.transientFailureRetried)
	t.Run("NodeNotReadyFailsTheCheck", e.nodeNotReady)
}

// stagedSpec is the staged rollout every scenario starts from: a canary
// of one node per zone, then the zones in order, a wave at a time (10
// nodes per zone fit in maxUnavailable).
func stagedSpec(canary nasv1alpha1.Canary, waves *nasv1alpha1.Waves, health *nasv1alpha1.Health) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		canary.Nodes, canary.SpreadBy = ptr.To(intstr.FromInt32(3)), corev1.LabelTopologyZone
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(10)),
			Canary: &canary, Waves: waves, Health: health}
	}
}

// slowImage is a new image whose agents turn Ready only after the given
// time (kwok's pod-running stage), so a stage lasts long enough to be
// caught in it.
func slowImage(img, readyAfter string) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers[0].Image = img
		s.Spec.Template.Annotations = map[string]string{"kwok.nodeagentset.io/ready-after": readyAfter}
	}
}

// killedInEveryStage: SIGKILL the manager in Canary (canary agents being
// replaced), Soaking (10s), AwaitingPromotion, a wave being updated and a wave
// soak. Each kill is made while status says the stage, and checked
// against the status frozen by the kill (kstatus and kubectl wait are
// asked there too); the restarted manager must resume the stage: the
// watched status never goes back a stage, never restarts a stage's clock,
// never changes the canary, and the pod checker sees no node outside the
// stage updated.
func (e *stagedEnv) killedInEveryStage(t *testing.T) {
	c := e.c
	set := e.deploy(t, "plugin", stagedSpec(nasv1alpha1.Canary{Soak: "10s", Promotion: nasv1alpha1.PromotionManual},
		&nasv1alpha1.Waves{By: corev1.LabelTopologyZone, Soak: "3s"}, &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](2)}))
	ch := watchPods(t, c.Client, set, e.nodes)
	order := &stageOrder{zones: e.zones}
	ch.setEach(order.check)
	phases := watchRollout(t, e.rolloutEnv, set)
	args := managerArgs(t, c, "nodeagentset:manager")
	start := time.Now()
	e.update(t, set, slowImage("registry.example/agent:2", "3s"))
	canary := e.canaryOf(t, ch, set)
	hash := e.updateHash(t, set)
	order.follow(ch, hash, canary)

	// kill waits for the stage (and more), SIGKILLs the manager, checks
	// the frozen status is still that stage, runs the stage's own checks,
	// and starts the manager again.
	kill := func(phase nasv1alpha1.RolloutPhase, wave string, more func() bool, frozen func(*nasv1alpha1.NodeAgentSet)) {
		t.Helper()
		e.waitFor(t, ch, fmt.Sprintf("phase %s %s", phase, wave), func() (bool, string) {
			r := e.get(t, set).Status.Rollout
			return r != nil && r.Phase == phase && r.Wave == wave && (more == nil || more()), fmt.Sprintf("%+v", r)
		})
		if err := c.KillProcess("manager"); err != nil {
			t.Fatal(err)
		}
		got := e.get(t, set)
		if r := got.Status.Rollout; r.Phase != phase || r.Wave != wave || !slices.Equal(r.CanaryNodes, canary) {
			t.Fatalf("killed in %s %s, but the status then says %+v", phase, wave, r)
		}
		if frozen != nil {
			frozen(got)
		}
		if err := c.StartProcess("manager", managerBinary, args...); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed and restarted in %s %s at %v", phase, wave, time.Since(start).Round(time.Millisecond))
	}
	inProgress := func(got *nasv1alpha1.NodeAgentSet) {
		if st := kstatus(t, got); st != kstatusv1.InProgressStatus {
			t.Errorf("kstatus %s in %s, want InProgress", st, got.Status.Rollout.Phase)
		}
		mustRun(t, c, nil, "kubectl", "wait", "-n", set.Namespace, "nodeagentset/agent",
			"--for=jsonpath={.status.rollout.phase}="+string(got.Status.Rollout.Phase), "--timeout=30s")
	}
	// A canary agent of the update revision placed, not Ready yet.
	replacing := func() bool {
		return slices.ContainsFunc(canary, func(n string) bool {
			return slices.ContainsFunc(ch.current()[n], func(p *corev1.Pod) bool { return onHash(p, hash) && !podReady(p) })
		})
	}
	kill(nasv1alpha1.PhaseCanary, "", replacing, inProgress)
	kill(nasv1alpha1.PhaseSoaking, "", nil, inProgress)
	kill(nasv1alpha1.PhaseAwaitingPromotion, "", nil, inProgress)
	mustPlugin(t, c, "awaiting promotion", "rollout", "status", "agent", "--watch=false")
	order.promoted.Store(true)
	mustPlugin(t, c, "", "rollout", "promote", "agent")
	waveA := func() bool {
		return slices.ContainsFunc(e.nodes, func(n string) bool {
			return e.zones[n] == "a" && !slices.Contains(canary, n) &&
				slices.ContainsFunc(ch.current()[n], func(p *corev1.Pod) bool { return onHash(p, hash) && !podReady(p) })
		})
	}
	kill(nasv1alpha1.PhaseWaves, "a", waveA, inProgress)
	kill(nasv1alpha1.PhaseSoaking, "b", nil, inProgress)
	e.waitFor(t, ch, "the rollout complete", e.complete(t, set))
	e.waitFor(t, ch, "every node updated", onRevision(ch, hash, all, e.nodes))
	mustRun(t, c, nil, "kubectl", "wait", "-n", set.Namespace, "nodeagentset/agent",
		"--for=jsonpath={.status.rollout.phase}=Complete", "--timeout=30s")
	t.Logf("five SIGKILLs, rollout complete in %v", time.Since(start).Round(time.Millisecond))

	phases.assertResumed(t, hash, canary, map[string]time.Duration{"Soaking/": 10 * time.Second, "Soaking/a": 3 * time.Second, "Soaking/b": 3 * time.Second})
	order.assertKept(t)
}

func onHash(p *corev1.Pod, hash string) bool { return podtemplate.Hash(p) == hash }

// assertKept fails the test if the checker saw a node outside its stage
// updated.
func (o *stageOrder) assertKept(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.broken) > 0 {
		t.Errorf("the stage order broke: %v", o.broken)
	}
}

// rolloutLog records every status.rollout the API server stored for a set,
// from a watch (no polling: nothing written is missed).
type rolloutLog struct {
	mu  sync.Mutex
	all []nasv1alpha1.RolloutStatus
}

func watchRollout(t *testing.T, e *rolloutEnv, set *nasv1alpha1.NodeAgentSet) *rolloutLog {
	t.Helper()
	wc, err := client.NewWithWatch(e.c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	list := &nasv1alpha1.NodeAgentSetList{}
	opts := []client.ListOption{client.InNamespace(set.Namespace), client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", set.Name)}}
	if err := wc.List(t.Context(), list, opts...); err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(t.Context(), list, append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	l := &rolloutLog{}
	go func() {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*nasv1alpha1.NodeAgentSet)
			if !ok || ev.Type == watch.Deleted || s.Status.Rollout == nil {
				continue
			}
			l.mu.Lock()
			l.all = append(l.all, *s.Status.Rollout.DeepCopy())
			l.mu.Unlock()
		}
	}()
	return l
}

// assertResumed checks the rollout of hash went through its stages in
// order, once each: the canary never changed, no stage came back after a
// later one, a stage's phaseSince never moved while it lasted, and each
// soak (key "phase/wave") lasted at least its length.
func (l *rolloutLog) assertResumed(t *testing.T, hash string, canary []string, soaks map[string]time.Duration) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var seen []string
	since := map[string]time.Time{}
	for _, r := range l.all {
		if r.Revision == "" || hash == "" || !strings.HasSuffix(r.Revision, "-"+hash) {
			continue
		}
		if len(r.CanaryNodes) > 0 && !slices.Equal(r.CanaryNodes, canary) {
			t.Errorf("canary changed to %v, was %v", r.CanaryNodes, canary)
		}
		key := string(r.Phase) + "/" + r.Wave
		at := r.PhaseSince.Time
		if len(seen) == 0 || seen[len(seen)-1] != key {
			if slices.Contains(seen, key) {
				t.Errorf("stage %s came back after %v", key, seen)
			}
			seen = append(seen, key)
			since[key] = at
		} else if !at.Equal(since[key]) {
			t.Errorf("stage %s restarted: phaseSince %v, then %v", key, since[key], at)
		}
	}
	for i, key := range seen[:max(len(seen)-1, 0)] {
		if want, ok := soaks[key]; ok {
			if took := since[seen[i+1]].Sub(since[key]); took < want-time.Second {
				t.Errorf("%s lasted %v, want %v", key, took, want)
			}
		}
	}
	t.Logf("stages seen: %v", seen)
	if t.Failed() {
		for _, r := range l.all {
			t.Logf("  %s %s/%s since %v canary %v failure %+v", r.Revision, r.Phase, r.Wave, r.PhaseSince, r.CanaryNodes, r.Failure)
		}
	}
}

// stalled waits for Stalled=True/HealthCheckFailed with the phase given
// and a failure newer than after; it returns the set then.
func (e *stagedEnv) stalled(t *testing.T, ch *checker, set *nasv1alpha1.NodeAgentSet, phase nasv1alpha1.RolloutPhase, after time.Time) *nasv1alpha1.NodeAgentSet {
	t.Helper()
	var got *nasv1alpha1.NodeAgentSet
	e.waitFor(t, ch, "Stalled HealthCheckFailed, phase "+string(phase), func() (bool, string) {
		got = e.get(t, set)
		c := meta.FindStatusCondition(got.Status.Conditions, nasv1alpha1.ConditionStalled)
		r := got.Status.Rollout
		return c != nil && c.Status == "True" && c.Reason == "HealthCheckFailed" && r != nil && r.Phase == phase && r.Failure != nil &&
			r.PhaseSince != nil && r.PhaseSince.After(after), fmt.Sprintf("stalled %+v rollout %+v", c, r)
	})
	if st := kstatus(t, got); st != kstatusv1.FailedStatus {
		t.Errorf("kstatus %s in %s, want Failed", st, phase)
	}
	return got
}

// abortThenRetry: failureAction Abort on a crash-looping release puts the
// canary nodes back on the current revision by itself; retry clears the
// failure and resumes the same revision: the canary nodes get it again,
// the check fails again, as a new failure (a later phaseSince), and the
// abort puts them back again.
func (e *stagedEnv) abortThenRetry(t *testing.T) {
	c := e.c
	set := e.deploy(t, "abort", stagedSpec(nasv1alpha1.Canary{}, &nasv1alpha1.Waves{By: corev1.LabelTopologyZone},
		&nasv1alpha1.Health{MaxRestarts: ptr.To[int32](2), FailureAction: nasv1alpha1.FailureAbort}))
	ch := watchPods(t, c.Client, set, e.nodes)
	order := &stageOrder{zones: e.zones}
	var mu sync.Mutex
	bad := map[string]bool{} // pods of the crash-looping revision ever seen
	current := e.updateHash(t, set)
	start := time.Now()
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:2-broken"
		s.Spec.Template.Annotations = map[string]string{"kwok.nodeagentset.io/crash-loop": "true"}
	})
	canary := e.canaryOf(t, ch, set)
	hash := e.updateHash(t, set)
	order.follow(ch, hash, canary)
	ch.setEach(func(live map[string][]*corev1.Pod) {
		order.check(live)
		mu.Lock()
		defer mu.Unlock()
		for _, pods := range live {
			for _, p := range pods {
				if onHash(p, hash) {
					bad[p.Name] = true
				}
			}
		}
	})
	badPods := func() int { mu.Lock(); defer mu.Unlock(); return len(bad) }

	got := e.stalled(t, ch, set, nasv1alpha1.PhaseAborted, time.Time{})
	first := got.Status.Rollout.PhaseSince.Time
	if f := got.Status.Rollout.Failure; !slices.Contains(canary, f.Node) {
		t.Errorf("failure %+v, want one on a canary node %v", f, canary)
	}
	mustRun(t, c, nil, "kubectl", "wait", "-n", "abort", "nodeagentset/agent", "--for=condition=Stalled", "--timeout=30s")
	if out, code := plugin(t, c, "-n", "abort", "rollout", "status", "agent", "--watch=false"); code == 0 {
		t.Errorf("rollout status exit 0 after a failed check:\n%s", out)
	}
	e.waitFor(t, ch, "the canary back on the current revision, without a verb", onRevision(ch, current, all, e.nodes))
	t.Logf("aborted by failureAction: every node back on the current revision %v after the update", time.Since(start).Round(time.Millisecond))
	before := badPods()

	mustPlugin(t, c, "", "-n", "abort", "rollout", "retry", "agent")
	got = e.stalled(t, ch, set, nasv1alpha1.PhaseAborted, first)
	if got.Status.UpdateRevision != e.get(t, set).Status.UpdateRevision || !slices.Equal(got.Status.Rollout.CanaryNodes, canary) {
		t.Errorf("retry changed the revision or the canary: %+v", got.Status.Rollout)
	}
	if badPods() <= before {
		t.Errorf("retry placed no agent of the failed revision again (%d before, %d after)", before, badPods())
	}
	e.waitFor(t, ch, "the canary back on the current revision after the retry", onRevision(ch, current, all, e.nodes))
	t.Logf("retried: failed again at %v (first at %v), back on the current revision", got.Status.Rollout.PhaseSince.Time, first)
	order.assertKept(t)
}

// transientFailureRetried: canary agents slower to turn Ready than
// maxUnavailableTime fail the check (Pause keeps them); once they are
// Ready and the operator loosens the check, retry resumes the same
// revision with the same pods, to completion.
func (e *stagedEnv) transientFailureRetried(t *testing.T) {
	c := e.c
	set := e.deploy(t, "retry", func(s *nasv1alpha1.NodeAgentSet) {
		stagedSpec(nasv1alpha1.Canary{}, nil, &nasv1alpha1.Health{MaxUnavailableTime: ptr.To[nasv1alpha1.Duration]("1s")})(s)
		// One wave of every other node after the retry.
		s.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromString("100%"))
	})
	ch := watchPods(t, c.Client, set, e.nodes)
	order := &stageOrder{zones: map[string]string{}} // one wave: no zone order
	ch.setEach(order.check)
	e.update(t, set, slowImage("registry.example/agent:2", "4s"))
	canary := e.canaryOf(t, ch, set)
	hash := e.updateHash(t, set)
	order.follow(ch, hash, canary)
	got := e.stalled(t, ch, set, nasv1alpha1.PhaseFailed, time.Time{})
	if f := got.Status.Rollout.Failure; f.Reason != "Unavailable" {
		t.Errorf("failure %+v, want Unavailable", f)
	}
	isCanary := func(n string) bool { return slices.Contains(canary, n) }
	e.waitFor(t, ch, "the canary agents Ready, the rest untouched", onRevision(ch, hash, isCanary, e.nodes))
	uids := map[string]string{}
	for _, n := range canary {
		uids[n] = string(ch.current()[n][0].UID)
	}
	// The check was too strict: loosen it (the revision stays) and retry.
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate.Health.MaxUnavailableTime = ptr.To[nasv1alpha1.Duration]("1m")
	})
	if h := e.updateHash(t, set); h != hash {
		t.Fatalf("changing the health check made a new revision %s", h)
	}
	order.promoted.Store(true)
	mustPlugin(t, c, "", "-n", "retry", "rollout", "retry", "agent")
	e.waitFor(t, ch, "the retried rollout complete", e.complete(t, set))
	e.waitFor(t, ch, "every node updated", onRevision(ch, hash, all, e.nodes))
	for _, n := range canary {
		if u := string(ch.current()[n][0].UID); u != uids[n] {
			t.Errorf("canary agent on %s replaced by the retry (%s, was %s)", n, u, uids[n])
		}
	}
	order.assertKept(t)
}

// nodeNotReady: a canary node dies after its new agent is Ready; the
// check (nodeNotReady, on by default) fails with cause NodeNotReady and
// no node beyond the canary is updated.
func (e *stagedEnv) nodeNotReady(t *testing.T) {
	c := e.c
	set := e.deploy(t, "not-ready", stagedSpec(nasv1alpha1.Canary{Soak: "10m"}, nil, &nasv1alpha1.Health{}))
	ch := watchPods(t, c.Client, set, e.nodes)
	order := &stageOrder{zones: map[string]string{}}
	ch.setEach(order.check)
	current := e.updateHash(t, set)
	e.update(t, set, image("registry.example/agent:2"))
	canary := e.canaryOf(t, ch, set)
	hash := e.updateHash(t, set)
	order.follow(ch, hash, canary)
	victim := canary[0]
	e.waitFor(t, ch, "the new agent Ready on "+victim, onRevision(ch, hash, func(string) bool { return true }, []string{victim}))
	start := time.Now()
	if err := c.KillNodes(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	got := e.stalled(t, ch, set, nasv1alpha1.PhaseFailed, time.Time{})
	t.Logf("node %s NotReady caught in %v: %+v", victim, time.Since(start).Round(time.Millisecond), got.Status.Rollout.Failure)
	if f := got.Status.Rollout.Failure; f.Reason != "NodeNotReady" || f.Node != victim {
		t.Errorf("failure %+v, want NodeNotReady on %s", f, victim)
	}
	rest := slices.DeleteFunc(slices.Clone(e.nodes), func(n string) bool { return slices.Contains(canary, n) })
	if ok, seen := onRevision(ch, current, all, rest)(); !ok {
		t.Errorf("nodes beyond the canary not on the current revision: %s", seen)
	}
	order.assertKept(t)
}
