package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// tracker watches the agent pods and notes, for each, the moment this
// program first saw it Ready. Figures are taken from those moments, not from
// polling, so a wait ends at the event that met its condition.
type tracker struct {
	mu      sync.Mutex
	pods    map[types.UID]podState
	last    time.Time // when the latest event was applied
	changed chan struct{}
	stop    context.CancelFunc
}

type podState struct {
	node, image string
	readyAt     time.Time // zero until Ready
	terminating bool
}

// agents summarises the pods against one image.
type agents struct {
	// ready counts nodes with a Ready pod of the image that is not being
	// deleted; others counts pods of any other image, deleted or not.
	ready, others int
}

func startTracker(ctx context.Context, client kubernetes.Interface) (*tracker, error) {
	ctx, cancel := context.WithCancel(ctx)
	t := &tracker{pods: map[types.UID]podState{}, changed: make(chan struct{}, 1), stop: cancel}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	informer := factory.Core().V1().Pods().Informer()
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.apply(obj, false) },
		UpdateFunc: func(_, obj any) { t.apply(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			t.apply(obj, true)
		},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		cancel()
		return nil, fmt.Errorf("pod watch did not sync")
	}
	return t, nil
}

func (t *tracker) apply(obj any, deleted bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	t.mu.Lock()
	if deleted {
		delete(t.pods, pod.UID)
	} else {
		s := t.pods[pod.UID]
		s.node = pod.Spec.NodeName
		s.image = pod.Spec.Containers[0].Image
		s.terminating = pod.DeletionTimestamp != nil
		if s.readyAt.IsZero() && podReady(pod) {
			s.readyAt = now
		}
		t.pods[pod.UID] = s
	}
	t.last = now
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// count summarises the pods against image.
func (t *tracker) count(image string) agents {
	t.mu.Lock()
	defer t.mu.Unlock()
	var a agents
	nodes := map[string]bool{}
	for _, s := range t.pods {
		switch {
		case s.image != image:
			a.others++
		case !s.readyAt.IsZero() && !s.terminating && !nodes[s.node]:
			nodes[s.node] = true
			a.ready++
		}
	}
	return a
}

// total is the number of agent pods that exist.
func (t *tracker) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pods)
}

// readyOn is when a pod of image first was Ready on node (zero if none).
func (t *tracker) readyOn(node, image string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first time.Time
	for _, s := range t.pods {
		if s.node == node && s.image == image && !s.readyAt.IsZero() && (first.IsZero() || s.readyAt.Before(first)) {
			first = s.readyAt
		}
	}
	return first
}

// waitFor returns the time of the event after which done first held.
func (t *tracker) waitFor(ctx context.Context, timeout time.Duration, what string, done func() bool) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		// Read after done: an event between the two would only move the
		// answer later by the moment between them, never before the event
		// that met the condition.
		if done() {
			t.mu.Lock()
			defer t.mu.Unlock()
			return t.last, nil
		}
		select {
		case <-t.changed:
		case <-deadline:
			return time.Time{}, fmt.Errorf("waiting %v for %s", timeout, what)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}
