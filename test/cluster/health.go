package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// KillNodes makes nodes dead as a real control plane sees a node whose
// kubelet stopped: kwok stops playing them (so nothing finishes their pods'
// deletion or starts their pods), their Ready condition goes Unknown, they
// are tainted node.kubernetes.io/unreachable:NoExecute, and their pods are
// set Ready False, which the node-lifecycle controller would do (it does not
// run here: see local-cluster-notes). kwok restarts to let go of them: it does
// not notice a removed annotation otherwise.
func (c *Cluster) KillNodes(ctx context.Context, names ...string) error {
	for _, name := range names {
		if err := c.updateNode(ctx, name, func(n *corev1.Node) { delete(n.Annotations, FakeNodeAnnotation) }); err != nil {
			return err
		}
	}
	if err := c.RestartKwok(); err != nil {
		return err
	}
	now := metav1.Now()
	for _, name := range names {
		if err := c.setNodeReady(ctx, name, corev1.ConditionUnknown, now); err != nil {
			return err
		}
		err := c.updateNode(ctx, name, func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &now})
		})
		if err != nil {
			return err
		}
		if err := c.setPodsReady(ctx, name, corev1.ConditionFalse); err != nil {
			return err
		}
	}
	return nil
}

// ReviveNodes brings dead nodes back: kwok plays them again (it marks them
// Ready and finishes their pods' deletions), the unreachable taint goes, and
// their running pods are Ready again, as a returning kubelet reports.
func (c *Cluster) ReviveNodes(ctx context.Context, names ...string) error {
	for _, name := range names {
		err := c.updateNode(ctx, name, func(n *corev1.Node) {
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeUnreachable })
			n.Annotations[FakeNodeAnnotation] = "fake"
		})
		if err != nil {
			return err
		}
	}
	if err := c.RestartKwok(); err != nil {
		return err
	}
	for _, name := range names {
		if err := c.setPodsReady(ctx, name, corev1.ConditionTrue); err != nil {
			return err
		}
	}
	return c.WaitNodesReady(ctx, 2*time.Minute, names...)
}

// RestartKwok stops kwok and starts it again with the same configuration.
func (c *Cluster) RestartKwok() error {
	if err := c.StopProcess("kwok", 10*time.Second); err != nil {
		return err
	}
	return c.startKwok()
}

func (c *Cluster) updateNode(ctx context.Context, name string, mutate func(*corev1.Node)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		mutate(n)
		_, err = c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("updating Node %q: %w", name, err)
	}
	return nil
}

// setNodeReady sets the node's Ready condition through nodes/status.
func (c *Cluster) setNodeReady(ctx context.Context, name string, status corev1.ConditionStatus, at metav1.Time) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: status, Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status.",
		LastHeartbeatTime: at, LastTransitionTime: at,
	}}}})
	if err != nil {
		return err
	}
	// Conditions merge by type in a strategic merge patch.
	_, err = c.Client.CoreV1().Nodes().PatchStatus(ctx, name, patch)
	if err != nil {
		return fmt.Errorf("setting Node %q Ready %s: %w", name, status, err)
	}
	return nil
}

// setPodsReady sets the Ready condition of every running pod bound to the
// node, as the node-lifecycle controller (False) or a kubelet (True) does.
func (c *Cluster) setPodsReady(ctx context.Context, node string, status corev1.ConditionStatus) error {
	pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return err
	}
	now := metav1.Now()
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{
			{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
		}}})
		if err != nil {
			return err
		}
		_, err = c.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		if err != nil {
			return fmt.Errorf("setting pod %s/%s Ready %s: %w", p.Namespace, p.Name, status, err)
		}
	}
	return nil
}
