package e2e

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// TestLocalClusterSmoke proves the local cluster is a working cluster: kwok
// makes fake nodes Ready and runs pods, the scheduler binds by node
// affinity, the garbage collector deletes dependents, and Stop leaves no
// process behind.
func TestLocalClusterSmoke(t *testing.T) {
	ctx := t.Context()
	c := cluster.StartForTest(t, cluster.Options{})

	nodes := cluster.Nodes("smoke", 5)
	if err := c.AddNodes(ctx, nodes...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(ctx, 30*time.Second, cluster.Names(nodes)...); err != nil {
		t.Fatal(err)
	}

	target := nodes[3].Name
	pod := pinnedPod("smoke", target)
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitPod(ctx, c, "default", pod.Name, func(p *corev1.Pod) bool {
		return p.Spec.NodeName == target && p.Status.Phase == corev1.PodRunning && podReady(p)
	}); err != nil {
		t.Fatalf("pod pinned to %s was not bound, Running and Ready: %v", target, err)
	}

	assertGarbageCollected(ctx, t, c)

	pids := c.Pids()
	if len(pids) != 5 {
		t.Errorf("cluster reports %d processes, want 5 (etcd, kube-apiserver, scheduler, controller-manager, kwok)", len(pids))
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d is still running after Stop", pid)
		}
	}
}

func assertGarbageCollected(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	t.Helper()
	cms := c.Client.CoreV1().ConfigMaps("default")
	owner, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dependent := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "dependent",
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
		}},
	}}
	if _, err := cms.Create(ctx, dependent, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cms.Get(ctx, dependent.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("dependent ConfigMap was not garbage collected after its owner was deleted: %v", err)
	}
}

func pinnedPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "agent", Image: "registry.example/agent:1"}},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{
						MatchFields: []corev1.NodeSelectorRequirement{{
							Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
						}},
					}},
				},
			}},
		},
	}
}

func waitPod(ctx context.Context, c *cluster.Cluster, ns, name string, ok func(*corev1.Pod) bool) error {
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return ok(p), nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w; last seen: node %q, phase %s, ready %t", err, last.Spec.NodeName, last.Status.Phase, podReady(last))
	}
	return err
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// alive reports whether pid names a running (not zombie) process.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	var state byte
	for i := len(stat) - 1; i > 0; i-- {
		if stat[i] == ')' && i+2 < len(stat) {
			state = stat[i+2]
			break
		}
	}
	return state != 'Z'
}
