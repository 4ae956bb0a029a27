package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// Sizes of the chaos tests: small in make test, larger in make test-chaos.
var (
	chaosNodes = envInt("NAS_CHAOS_NODES", 200)
	chaosKills = envInt("NAS_CHAOS_KILLS", 10)
)

// chaosCluster starts a cluster with n nodes labelled for the agent.
func chaosCluster(t *testing.T, n int, opts cluster.Options) (*cluster.Cluster, []string) {
	t.Helper()
	c := startCluster(t, opts)
	specs := cluster.Nodes("node", n)
	for i := range specs {
		specs[i].Labels = map[string]string{"agent": "yes"}
	}
	if err := c.AddNodes(t.Context(), specs...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(t.Context(), 3*time.Minute, cluster.Names(specs)...); err != nil {
		t.Fatal(err)
	}
	return c, cluster.Names(specs)
}

// slowRollout: agents start 1s after they are bound, so a rollout lasts
// long enough to be interrupted many times.
func slowRollout(s *nasv1alpha1.NodeAgentSet) {
	s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromString("10%"))}
	s.Spec.Template.Annotations = map[string]string{"kwok.nodeagentset.io/ready-after": "1s"}
}

// assertInvariants checks what the checker saw over the whole run.
func assertInvariants(t *testing.T, ch *checker, budget int) {
	t.Helper()
	unav, _, most := ch.worst()
	twins := ch.worstTwins()
	t.Logf("worst seen: %d nodes without an available agent (budget %d), %d pods on a node, %d live pods of one revision on a node",
		unav, budget, most, twins)
	if unav > budget {
		t.Errorf("%d nodes without an available agent; maxUnavailable is %d", unav, budget)
	}
	if most > 2 {
		t.Errorf("a node held %d pods", most)
	}
	if twins > 1 {
		t.Errorf("a node ran %d live pods of one revision", twins)
	}
}

// managerArgs provisions a user and returns the manager's flags for it.
func managerArgs(t *testing.T, c *cluster.Cluster, user string, extra ...string) []string {
	t.Helper()
	_, kubeconfig, err := c.AddUser(user, "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"--kubeconfig=" + kubeconfig, "--metrics-bind-address=0", "--health-probe-bind-address=0"}, extra...)
}

// TestRolloutSurvivesManagerCrashes kills the manager with SIGKILL at random
// moments during rolling updates and restarts it, at least NAS_CHAOS_KILLS
// times, while a checker watches every pod event.
func TestRolloutSurvivesManagerCrashes(t *testing.T) {
	c, nodes := chaosCluster(t, chaosNodes, cluster.Options{})
	env := &rolloutEnv{c: c, k: startManager(t, c), nodes: nodes}
	set := env.deploy(t, "crash", slowRollout)
	ch := watchPods(t, c.Client, set, nodes)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	args := managerArgs(t, c, "nodeagentset:manager")
	version, kills := 2, 0
	env.update(t, set, image(fmt.Sprintf("registry.example/agent:%d", version)))
	for kills < chaosKills {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		if err := c.KillProcess("manager"); err != nil {
			t.Fatal(err)
		}
		kills++
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		if err := c.StartProcess("manager", managerBinary, args...); err != nil {
			t.Fatal(err)
		}
		// Keep a rollout going: start the next one when this one is done.
		if got := env.get(t, set); got.Status.UpdatedNumberScheduled == int32(len(nodes)) &&
			got.Status.NumberAvailable == int32(len(nodes)) && got.Status.ObservedGeneration == got.Generation {
			version++
			env.update(t, set, image(fmt.Sprintf("registry.example/agent:%d", version)))
		}
	}
	hash := env.updateHash(t, set)
	env.waitFor(t, ch, "the last rollout completed", onRevision(ch, hash, all, nodes))
	t.Logf("%d SIGKILLs survived over %d rollouts of %d nodes", kills, version-1, len(nodes))
	assertInvariants(t, ch, (len(nodes)+9)/10)
}

// TestLeaderFailover runs two managers with leader election, kills the
// leader mid-rollout, and requires the other to take over within the lease
// duration (15s), the rollout to complete within its budget, and the
// audit log to show the two never writing pods at the same time.
func TestLeaderFailover(t *testing.T) {
	c, nodes := chaosCluster(t, min(chaosNodes, 100), cluster.Options{Audit: true})
	le := []string{"--leader-elect", "--leader-election-namespace=default"}
	if err := c.StartProcess("manager-a", managerBinary, managerArgs(t, c, "nodeagentset:manager-a", le...)...); err != nil {
		t.Fatal(err)
	}
	env := &rolloutEnv{c: c, k: startClient(t, c), nodes: nodes}
	lease := func() *coordinationv1.Lease {
		l := &coordinationv1.Lease{}
		if err := env.k.Get(t.Context(), keyOf("default", "nodeagentset.io"), l); err != nil {
			return l
		}
		return l
	}
	holder := func() string { return ptr.Deref(lease().Spec.HolderIdentity, "") }
	env.waitFor(t, nil, "manager-a to lead", func() (bool, string) { return holder() != "", "no lease holder" })
	first := holder()
	if err := c.StartProcess("manager-b", managerBinary, managerArgs(t, c, "nodeagentset:manager-b", le...)...); err != nil {
		t.Fatal(err)
	}
	set := env.deploy(t, "failover", slowRollout)
	ch := watchPods(t, c.Client, set, nodes)
	env.update(t, set, image("registry.example/agent:2"))
	time.Sleep(2 * time.Second)
	if err := c.KillProcess("manager-a"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	lastRenew := lease().Spec.RenewTime
	env.waitFor(t, nil, "manager-b to take the lease", func() (bool, string) {
		h := holder()
		return h != "" && h != first, "holder " + h
	})
	acquired := lease().Spec.AcquireTime
	if lastRenew == nil || acquired == nil {
		t.Fatalf("lease without renew or acquire time: %+v", lease().Spec)
	}
	// The standby takes the lease once it has seen it unrenewed for the
	// lease duration (15s). client-go's elector tries every retry period
	// (2s) stretched by a jitter factor of 1.2, so 2 to 4.4s apart: it sees
	// the last renewal up to one try late and acts up to one try after the
	// lease ran out. 15s + 2 x 4.4s = 23.8s at most from the last renewal,
	// plus a second for a loaded machine.
	gap := acquired.Sub(lastRenew.Time)
	t.Logf("leader killed %v after its last renewal; the standby took the lease %v after that renewal",
		killed.Sub(lastRenew.Time).Round(100*time.Millisecond), gap.Round(100*time.Millisecond))
	if limit := 15*time.Second + 2*4400*time.Millisecond + time.Second; gap > limit {
		t.Errorf("takeover %v after the last renewal; want within the 15s lease duration plus two jittered retry periods (%v)", gap, limit)
	}
	hash := env.updateHash(t, set)
	env.waitFor(t, ch, "the rollout completed under the new leader", onRevision(ch, hash, all, nodes))
	assertInvariants(t, ch, (len(nodes)+9)/10)
	assertOneWriterAtATime(t, c, killed)
}

// assertOneWriterAtATime reads the audit log: manager-a's pod writes all
// come before it was killed, manager-b's all after.
func assertOneWriterAtATime(t *testing.T, c *cluster.Cluster, killed time.Time) {
	t.Helper()
	writes, err := c.Writes()
	if err != nil {
		t.Fatal(err)
	}
	var lastA, firstB time.Time
	var countA, countB int
	for _, w := range writes {
		if w.Resource != "pods" || w.Subresource != "" {
			continue
		}
		switch w.User {
		case "nodeagentset:manager-a":
			countA++
			if w.At.After(lastA) {
				lastA = w.At
			}
		case "nodeagentset:manager-b":
			countB++
			if firstB.IsZero() || w.At.Before(firstB) {
				firstB = w.At
			}
		}
	}
	t.Logf("pod writes: manager-a %d (last %s), manager-b %d (first %s), a killed at %s", countA,
		lastA.Format("15:04:05.000"), countB, firstB.Format("15:04:05.000"), killed.Format("15:04:05.000"))
	if countA == 0 || countB == 0 {
		t.Fatalf("expected both managers to write pods in turn: a %d, b %d", countA, countB)
	}
	if lastA.After(killed) || firstB.Before(killed) {
		t.Errorf("two active leaders: manager-a wrote pods until %s, manager-b from %s",
			lastA.Format("15:04:05.000"), firstB.Format("15:04:05.000"))
	}
}

// TestAPIServerRestartMidRollout stops kube-apiserver for a few seconds in
// the middle of a rollout; the manager (same process) must recover and
// finish it.
func TestAPIServerRestartMidRollout(t *testing.T) {
	c, nodes := chaosCluster(t, min(chaosNodes, 100), cluster.Options{})
	env := &rolloutEnv{c: c, k: startManager(t, c), nodes: nodes}
	pid, err := c.Pid("manager")
	if err != nil {
		t.Fatal(err)
	}
	set := env.deploy(t, "restart", slowRollout)
	ch := watchPods(t, c.Client, set, nodes)
	env.update(t, set, image("registry.example/agent:2"))
	time.Sleep(2 * time.Second)
	if err := c.RestartAPIServer(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	hash := env.updateHash(t, set)
	env.waitFor(t, ch, "the rollout completed after the restart", onRevision(ch, hash, all, nodes))
	if now, err := c.Pid("manager"); err != nil || now != pid {
		t.Errorf("the manager was restarted (pid %d, now %d, %v)", pid, now, err)
	}
	if err := c.Healthy(); err != nil {
		t.Errorf("a component died: %v", err)
	}
	assertInvariants(t, ch, (len(nodes)+9)/10)
}

// TestRefusedTemplateBacksOffAndSparesOtherSets: a set whose pods the API
// server refuses retries with growing delays (counted in the audit log),
// reports the server's message, and a healthy set beside it converges.
func TestRefusedTemplateBacksOffAndSparesOtherSets(t *testing.T) {
	c, nodes := chaosCluster(t, 20, cluster.Options{Audit: true})
	env := &rolloutEnv{c: c, k: startManager(t, c), nodes: nodes}
	if err := env.k.Create(t.Context(), namespace("broken")); err != nil {
		t.Fatal(err)
	}
	broken := agentSet("broken", "agent")
	// The CRD accepts it; pod creation refuses it.
	broken.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "missing", MountPath: "/data"}}
	if err := env.k.Create(t.Context(), broken); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	healthy := env.deploy(t, "healthy", nil)
	t.Logf("healthy set converged beside the broken one in %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(20*time.Second - time.Since(start))
	writes, err := c.Writes()
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, w := range writes {
		if w.User == "nodeagentset:manager" && w.Resource == "pods" && w.Verb == "create" && w.Code >= 400 {
			refused++
		}
	}
	t.Logf("refused pod creates in 20s: %d", refused)
	// Exponential backoff from 5ms doubles past 5s within 11 tries; a hot
	// loop would make thousands.
	if refused == 0 || refused > 20 {
		t.Errorf("%d refused pod creates in 20s; want a few (backoff), not none and not a hot loop", refused)
	}
	if msg := conditionMessage(env.get(t, broken), nasv1alpha1.ConditionPodFailure); !strings.Contains(msg, "volumeMounts[0].name: Not found") {
		t.Errorf("PodFailure condition does not carry the server's message: %q", msg)
	}
	if st := env.get(t, healthy).Status; st.NumberAvailable != int32(len(nodes)) {
		t.Errorf("the healthy set lost agents while the broken one retried: %+v", st)
	}
}

func conditionMessage(set *nasv1alpha1.NodeAgentSet, t string) string {
	for _, c := range set.Status.Conditions {
		if c.Type == t {
			return c.Message
		}
	}
	return ""
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func startClient(t *testing.T, c *cluster.Cluster) client.Client {
	t.Helper()
	k, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyOf(namespace, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: namespace, Name: name}
}
