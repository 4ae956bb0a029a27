package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// TestConvergesOnFakeNodes runs the manager on a real control plane with
// scheduler, garbage collector and kwok: a set on N nodes (N = 50, or
// $NAS_E2E_NODES), a tenth of them tainted NoSchedule and a tenth without
// the label the set selects, ends with exactly one Running, Ready, bound
// pod on every eligible node and none elsewhere; kubectl wait sees it
// Available; deleting the set deletes its pods.
func TestConvergesOnFakeNodes(t *testing.T) {
	n := envInt("NAS_E2E_NODES", 50)
	ctx := t.Context()
	c := startCluster(t, cluster.Options{})
	specs := cluster.Nodes("node", n)
	eligible := map[string]bool{}
	for i := range specs {
		specs[i].Labels = map[string]string{"agent": "yes"}
		switch i % 10 {
		case 3:
			specs[i].Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
		case 7:
			specs[i].Labels = nil
		default:
			eligible[specs[i].Name] = true
		}
	}
	if err := c.AddNodes(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(ctx, 2*time.Minute, cluster.Names(specs)...); err != nil {
		t.Fatal(err)
	}
	k := startManager(t, c)
	if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "agents"}}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	set := agentSet("agents", "agent")
	if err := k.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	if err := waitConverged(ctx, k, set, eligible); err != nil {
		t.Fatal(err)
	}
	converged := time.Since(start)
	pid, _ := c.Pid("manager")
	usage, _ := cluster.ProcessUsage(pid)
	t.Logf("%d nodes (%d eligible): converged in %v; manager peak RSS %.1f MiB", n, len(eligible), converged.Round(time.Millisecond), float64(usage.PeakRSS)/(1<<20))

	kubectlWait := exec.CommandContext(ctx, c.BinPath("kubectl"), "wait", "--for=condition=Available", "nas/agent", "-n", "agents", "--timeout=60s")
	kubectlWait.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	if out, err := kubectlWait.CombinedOutput(); err != nil {
		t.Fatalf("kubectl wait --for=condition=Available: %v\n%s", err, out)
	}

	if err := k.Delete(ctx, set); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := setPods(ctx, k, set)
		return err == nil && len(pods) == 0, nil
	})
	if err != nil {
		pods, _ := setPods(ctx, k, set)
		t.Fatalf("%d pods left after the set was deleted: %v", len(pods), err)
	}
}

func agentSet(ns, name string) *nasv1alpha1.NodeAgentSet {
	labels := map[string]string{"app": name}
	return &nasv1alpha1.NodeAgentSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Selector: &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"app": nasv1alpha1.LabelValue(name)}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"agent": "yes"},
					Containers:   []corev1.Container{{Name: "agent", Image: "registry.example/agent:1"}},
				},
			},
		},
	}
}

func setPods(ctx context.Context, k client.Client, set *nasv1alpha1.NodeAgentSet) ([]corev1.Pod, error) {
	var pods corev1.PodList
	err := k.List(ctx, &pods, client.InNamespace(set.Namespace), client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name})
	return pods.Items, err
}

// waitConverged waits until every eligible node runs exactly one bound,
// Running, Ready pod of the set, no other node runs one, and the set
// reports itself Available.
func waitConverged(ctx context.Context, k client.Client, set *nasv1alpha1.NodeAgentSet, eligible map[string]bool) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := setPods(ctx, k, set)
		if err != nil {
			return false, nil
		}
		perNode := map[string]int{}
		ready, stray := 0, 0
		for _, p := range pods {
			perNode[p.Spec.NodeName]++
			if !eligible[p.Spec.NodeName] {
				stray++
			} else if p.Status.Phase == corev1.PodRunning && podReady(&p) {
				ready++
			}
		}
		dup := 0
		for _, count := range perNode {
			if count > 1 {
				dup++
			}
		}
		got := &nasv1alpha1.NodeAgentSet{}
		if err := k.Get(ctx, client.ObjectKeyFromObject(set), got); err != nil {
			return false, nil
		}
		st := got.Status
		last = fmt.Sprintf("%d pods, %d ready on eligible nodes, %d stray, %d nodes with duplicates; status desired %d available %d",
			len(pods), ready, stray, dup, st.DesiredNumberScheduled, st.NumberAvailable)
		return ready == len(eligible) && len(pods) == len(eligible) && stray == 0 && dup == 0 &&
			st.DesiredNumberScheduled == int32(len(eligible)) && st.NumberAvailable == int32(len(eligible)), nil
	})
	if err != nil {
		return fmt.Errorf("set did not converge: %w; last seen: %s", err, last)
	}
	return nil
}
