package cluster

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// FakeNodeAnnotation marks the nodes kwok manages.
const FakeNodeAnnotation = "kwok.x-k8s.io/node"

// NodeSpec describes one fake node.
type NodeSpec struct {
	Name          string
	Labels        map[string]string
	Taints        []corev1.Taint
	Unschedulable bool
	// Capacity defaults to 32 CPUs, 256Gi memory and 110 pods.
	Capacity corev1.ResourceList
}

// Nodes returns n plain node specs named prefix-0000, prefix-0001, ...
func Nodes(prefix string, n int) []NodeSpec {
	specs := make([]NodeSpec, n)
	for i := range specs {
		specs[i] = NodeSpec{Name: fmt.Sprintf("%s-%04d", prefix, i)}
	}
	return specs
}

func (s NodeSpec) node() *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   s.Name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
		"type":                 "kwok",
	}
	for k, v := range s.Labels {
		labels[k] = v
	}
	capacity := s.Capacity
	if capacity == nil {
		capacity = corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("32"),
			corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		}
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        s.Name,
			Labels:      labels,
			Annotations: map[string]string{FakeNodeAnnotation: "fake"},
		},
		Spec: corev1.NodeSpec{Taints: s.Taints, Unschedulable: s.Unschedulable},
		// Nodes are the one kind whose status may be set on create.
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// AddNodes creates the nodes (16 at a time) and returns once they exist; kwok
// then marks them Ready. Use WaitNodesReady to wait for that.
func (c *Cluster) AddNodes(ctx context.Context, specs ...NodeSpec) error {
	return ForEach(ctx, len(specs), 16, func(i int) error {
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, specs[i].node(), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Node %q: %w", specs[i].Name, err)
		}
		return nil
	})
}

// ForEach runs do(0..n-1) on the given number of workers and returns the
// first error (all of them still run).
func ForEach(ctx context.Context, n, workers int, do func(i int) error) error {
	work := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range min(workers, n) {
		wg.Go(func() {
			for i := range work {
				if err := do(i); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return cmp.Or(firstErr, ctx.Err())
}

// DeleteNode deletes a node (its pods stay until something deletes them, as
// in a real cluster).
func (c *Cluster) DeleteNode(ctx context.Context, name string) error {
	err := c.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Node %q: %w", name, err)
	}
	return nil
}

// WaitNodesReady waits until every named node reports Ready=True.
func (c *Cluster) WaitNodesReady(ctx context.Context, timeout time.Duration, names ...string) error {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	var notReady []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil // the API server may be restarting; try again
		}
		ready := map[string]bool{}
		for _, n := range nodes.Items {
			ready[n.Name] = NodeReady(&n)
		}
		notReady = notReady[:0]
		for n := range want {
			if !ready[n] {
				notReady = append(notReady, n)
			}
		}
		return len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d nodes to be Ready (%d still not, e.g. %v): %w",
			len(names), len(notReady), first(notReady, 3), err)
	}
	return nil
}

// NodeReady reports whether the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Names lists the names of specs.
func Names(specs []NodeSpec) []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
