package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

var startupTaint = corev1.Taint{Key: "example.com/agent-not-ready", Effect: corev1.TaintEffectNoSchedule}

// chartUser is the user the chart's ServiceAccount acts as.
const chartUser = "system:serviceaccount:nas-system:nas-nodeagentset"

// applyChart renders the chart (release nas, namespace nas-system) with
// the given helm flags and applies it.
func applyChart(t *testing.T, c *cluster.Cluster, helmArgs ...string) {
	t.Helper()
	args := append([]string{"template", "nas", chart, "-n", "nas-system"}, helmArgs...)
	mustRun(t, c, mustRun(t, nil, nil, "helm", args...), "kubectl", "apply", "-f", "-")
}

// startManagerAsChart runs the manager with a token of the chart's
// ServiceAccount, so it has exactly the chart's permissions.
func startManagerAsChart(t *testing.T, c *cluster.Cluster, extra ...string) string {
	t.Helper()
	token := strings.TrimSpace(string(mustRun(t, c, nil, "kubectl", "create", "token", "nas-nodeagentset", "-n", "nas-system", "--duration=1h")))
	kubeconfig := tokenKubeconfig(t, c.Config, token)
	args := append([]string{"--kubeconfig=" + kubeconfig, "--leader-elect", "--leader-election-namespace=nas-system"}, extra...)
	if err := c.StartProcess("manager", managerBinary, args...); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// TestStartupTaint: a node registered with the set's startup taint keeps
// it, and a workload pinned there stays Pending, until the agent is
// available; without the chart's permission the set says so; with it the
// taint comes off and the workload is scheduled within seconds. A taint
// added after the agent was available comes off too. Only tainted nodes
// are ever patched (audit log).
func TestStartupTaint(t *testing.T) {
	ctx := t.Context()
	c := startCluster(t, cluster.Options{Audit: true})
	specs := cluster.Nodes("node", 4)
	specs = append(specs, cluster.NodeSpec{Name: "tainted-0", Taints: []corev1.Taint{startupTaint}})
	for i := range specs {
		specs[i].Labels = map[string]string{"agent": "yes"}
	}
	if err := c.AddNodes(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(ctx, time.Minute, cluster.Names(specs)...); err != nil {
		t.Fatal(err)
	}
	mustRun(t, c, nil, "kubectl", "create", "namespace", "nas-system")
	applyChart(t, c) // startupTaints.enabled false: no nodes patch
	startManagerAsChart(t, c, "--metrics-bind-address=0", "--health-probe-bind-address=0")
	k := startClient(t, c)
	e := &taintEnv{t: t, k: k, c: c}

	if err := k.Create(ctx, namespace("taint")); err != nil {
		t.Fatal(err)
	}
	set := agentSet("taint", "agent")
	set.Spec.MinReadySeconds = 5
	set.Spec.StartupTaint = &nasv1alpha1.StartupTaint{Key: startupTaint.Key, Effect: startupTaint.Effect}
	if err := k.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	workload := e.workload("tainted-0")

	// Without the permission: the agent runs and is available, the set
	// names the missing permission, the taint stays, the workload waits.
	e.waitFor("StartupTaintRemoved=False (Forbidden) naming the permission", func() (bool, string) {
		got := &nasv1alpha1.NodeAgentSet{}
		if err := k.Get(ctx, client.ObjectKeyFromObject(set), got); err != nil {
			return false, err.Error()
		}
		cond := meta.FindStatusCondition(got.Status.Conditions, nasv1alpha1.ConditionStartupTaintRemoved)
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == "Forbidden" &&
			strings.Contains(cond.Message, "patch nodes") && got.Status.NumberAvailable == 5, fmt.Sprintf("%+v", got.Status)
	})
	if !e.tainted("tainted-0") || e.bound(workload) {
		t.Fatal("without permission, the taint was lifted or the workload scheduled")
	}

	// Granted by the chart: the next try (at most StartupTaintRetry later)
	// lifts the taint and the workload is scheduled.
	applyChart(t, c, "--set", "startupTaints.enabled=true")
	e.waitFor("the taint lifted once the chart grants nodes patch", func() (bool, string) {
		return !e.tainted("tainted-0") && e.bound(workload), "tainted or workload Pending"
	})

	// A node that registers with the taint: held until its agent is
	// available, not merely Ready (cilium #29405), then freed within seconds.
	if err := c.AddNodes(ctx, cluster.NodeSpec{Name: "tainted-1", Labels: map[string]string{"agent": "yes"}, Taints: []corev1.Taint{startupTaint}}); err != nil {
		t.Fatal(err)
	}
	late := e.workload("tainted-1")
	var available time.Time
	e.waitFor("the workload on tainted-1 scheduled", func() (bool, string) {
		agent := e.agentOn(set, "tainted-1")
		if agent != nil && available.IsZero() {
			if since, ready := plan.ReadySince(agent); ready {
				available = since.Add(5 * time.Second)
			}
		}
		bound := e.bound(late)
		if (available.IsZero() || time.Now().Before(available.Add(-time.Second))) && (bound || !e.tainted("tainted-1")) {
			t.Fatalf("taint lifted or workload scheduled before the agent was available (available at %v)", available)
		}
		return bound, fmt.Sprintf("agent available at %v", available)
	})
	delay := time.Since(available)
	t.Logf("workload on a freshly registered node scheduled %v after its agent became available", delay.Round(time.Millisecond))
	if delay > 15*time.Second {
		t.Errorf("workload scheduled %v after the agent became available, want within seconds", delay)
	}

	// The taint added to a node whose agent is long available comes off
	// too (cilium #17103).
	e.setTaint("node-0000")
	e.waitFor("a taint added later lifted", func() (bool, string) { return !e.tainted("node-0000"), "still tainted" })

	// Only nodes that carried the taint were ever patched.
	writes, err := c.Writes()
	if err != nil {
		t.Fatal(err)
	}
	patched := map[string]int{}
	for _, w := range writes {
		if w.User == chartUser && w.Resource == "nodes" {
			patched[w.Name]++
		}
	}
	for name := range patched {
		if !slices.Contains([]string{"tainted-0", "tainted-1", "node-0000"}, name) {
			t.Errorf("the manager wrote node %s, which never carried the taint (writes by node: %v)", name, patched)
		}
	}
	t.Logf("node writes by the manager, per node (403s included): %v", patched)
}

type taintEnv struct {
	t *testing.T
	k client.Client
	c *cluster.Cluster
}

func (e *taintEnv) waitFor(what string, cond func() (bool, string)) {
	e.t.Helper()
	waitFor(e.t, 2*time.Minute, what, cond)
}

// workload creates a plain pod (no toleration) pinned to node.
func (e *taintEnv) workload(node string) *corev1.Pod {
	e.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "workload-" + node, Namespace: "taint"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{corev1.LabelHostname: node},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
		},
	}
	if err := e.k.Create(e.t.Context(), pod); err != nil {
		e.t.Fatal(err)
	}
	return pod
}

func (e *taintEnv) bound(pod *corev1.Pod) bool {
	got := &corev1.Pod{}
	return e.k.Get(e.t.Context(), client.ObjectKeyFromObject(pod), got) == nil && got.Spec.NodeName != ""
}

func (e *taintEnv) node(name string) *corev1.Node {
	n := &corev1.Node{}
	if err := e.k.Get(e.t.Context(), client.ObjectKey{Name: name}, n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *taintEnv) tainted(name string) bool {
	return plan.HasStartupTaint(e.node(name), startupTaint.Key, startupTaint.Effect)
}

func (e *taintEnv) setTaint(name string) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n := e.node(name)
		n.Spec.Taints = append(n.Spec.Taints, startupTaint)
		return e.k.Update(e.t.Context(), n)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *taintEnv) agentOn(set *nasv1alpha1.NodeAgentSet, node string) *corev1.Pod {
	pods, err := setPods(e.t.Context(), e.k, set)
	if err != nil {
		return nil
	}
	for i := range pods {
		if pods[i].Spec.NodeName == node && pods[i].DeletionTimestamp == nil {
			return &pods[i]
		}
	}
	return nil
}

// The chart grants nodes patch only with startupTaints.enabled, and the
// kustomize default (config/default) not at all.
func TestNodePatchGrantedOnlyForStartupTaints(t *testing.T) {
	grantsNodePatch := func(manifests []byte) bool {
		for _, doc := range strings.Split(string(manifests), "\n---") {
			var obj struct {
				Kind  string `json:"kind"`
				Rules []struct {
					Resources []string `json:"resources"`
					Verbs     []string `json:"verbs"`
				} `json:"rules"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatal(err)
			}
			for _, r := range obj.Rules {
				if (slices.Contains(r.Resources, "nodes") || slices.Contains(r.Resources, "*")) &&
					(slices.Contains(r.Verbs, "patch") || slices.Contains(r.Verbs, "*")) {
					return true
				}
			}
		}
		return false
	}
	if grantsNodePatch(mustRun(t, nil, nil, "helm", "template", "nas", chart)) {
		t.Error("the chart grants nodes patch with startupTaints.enabled unset")
	}
	if !grantsNodePatch(mustRun(t, nil, nil, "helm", "template", "nas", chart, "--set", "startupTaints.enabled=true")) {
		t.Error("the chart does not grant nodes patch with startupTaints.enabled=true")
	}
	if grantsNodePatch(mustRun(t, nil, nil, "kubectl", "kustomize", "../../config/default")) {
		t.Error("config/default grants nodes patch")
	}
}
