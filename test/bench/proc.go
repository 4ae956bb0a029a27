package bench

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// usage accounts a process's CPU per phase.
type usage struct {
	pid     int
	started bool
	last    time.Duration
	spent   []time.Duration
}

// mark closes the current phase, if one is open, and opens the next.
func (u *usage) mark() error {
	if u.pid == 0 {
		return nil
	}
	now, err := cluster.ProcessUsage(u.pid)
	if err != nil {
		return err
	}
	if u.started {
		u.spent = append(u.spent, now.CPU-u.last)
	}
	u.started, u.last = true, now.CPU
	return nil
}

// waitIdle returns once pid has used under 4% of a CPU over half a second:
// its caches are synced and its work is done.
func waitIdle(ctx context.Context, pid int) error {
	const window, quiet = 500 * time.Millisecond, 20 * time.Millisecond
	deadline := time.Now().Add(2 * time.Minute)
	prev, err := cluster.ProcessUsage(pid)
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(window):
		}
		cur, err := cluster.ProcessUsage(pid)
		if err != nil {
			return err
		}
		if cur.CPU-prev.CPU <= quiet {
			return nil
		}
		prev = cur
	}
	return fmt.Errorf("process %d still busy after 2 minutes", pid)
}

// ensureNamespace creates a namespace unless it exists.
func ensureNamespace(ctx context.Context, k kubernetes.Interface, name string) error {
	_, err := k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
