package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// The cluster runs the upstream DaemonSet controller only when asked (the
// benchmark compares against it); asked, it works on kwok's nodes.
func TestUpstreamDaemonSetControllerOnRequest(t *testing.T) {
	ctx := t.Context()
	c := startCluster(t, cluster.Options{Controllers: append(slices.Clone(cluster.DefaultControllers), "daemonset-controller")})
	nodes := cluster.Nodes("node", 5)
	if err := c.AddNodes(ctx, nodes...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(ctx, time.Minute, cluster.Names(nodes)...); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "ds"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "ds", Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "registry.example/agent:1"}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := c.Client.AppsV1().DaemonSets("default").Get(ctx, "ds", metav1.GetOptions{})
		return err == nil && got.Status.DesiredNumberScheduled == 5 && got.Status.NumberReady == 5, nil
	})
	if err != nil {
		t.Fatalf("the DaemonSet did not reach 5 Ready pods: %v", err)
	}
}
