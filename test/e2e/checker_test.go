package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// checker watches a set's pods (no polling: every event of the watch is
// applied in order) and records, over the whole run, the worst it saw: the
// most desired nodes without an available agent, the most nodes running
// two agents, the most pods on one node, and replacements of pods it was
// told must not be restarted.
type checker struct {
	mu      sync.Mutex
	nodes   map[string]bool // desired nodes
	pods    map[types.UID]*corev1.Pod
	maxUnav int
	maxTwo  int
	maxPods int
	deleted map[types.UID]bool
	changed chan struct{}
	err     error
}

func watchPods(t *testing.T, cs kubernetes.Interface, set *nasv1alpha1.NodeAgentSet, desired []string) *checker {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	ch := &checker{nodes: map[string]bool{}, pods: map[types.UID]*corev1.Pod{}, deleted: map[types.UID]bool{}, changed: make(chan struct{}, 1)}
	for _, n := range desired {
		ch.nodes[n] = true
	}
	sel := nasv1alpha1.LabelSetName + "=" + set.Name
	list, err := cs.CoreV1().Pods(set.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		ch.pods[list.Items[i].UID] = &list.Items[i]
	}
	w, err := cs.CoreV1().Pods(set.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	ch.observe()
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				ch.fail(fmt.Errorf("watch error: %v", ev.Object))
				return
			}
			ch.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(ch.pods, pod.UID)
				ch.deleted[pod.UID] = true
			} else {
				ch.pods[pod.UID] = pod
			}
			ch.mu.Unlock()
			ch.observe()
		}
	}()
	return ch
}

func (ch *checker) fail(err error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.err == nil {
		ch.err = err
	}
}

// observe measures the current state and keeps the worst.
func (ch *checker) observe() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	perNode, liveNode := map[string]int{}, map[string]int{}
	available := map[string]bool{}
	for _, p := range ch.pods {
		n := podtemplate.NodeOf(p)
		perNode[n]++
		if p.DeletionTimestamp == nil {
			liveNode[n]++
			available[n] = available[n] || podReady(p)
		}
	}
	// Two live agents on a node is a surge; an old agent still terminating
	// next to its replacement is not (it counts toward "pods on a node").
	unav, two := 0, 0
	for n := range ch.nodes {
		if !available[n] {
			unav++
		}
		if liveNode[n] == 2 {
			two++
		}
	}
	for _, c := range perNode {
		ch.maxPods = max(ch.maxPods, c)
	}
	ch.maxUnav, ch.maxTwo = max(ch.maxUnav, unav), max(ch.maxTwo, two)
	select {
	case ch.changed <- struct{}{}:
	default:
	}
}

// worst returns the worst values seen so far.
func (ch *checker) worst() (unavailable, twoPods, podsOnANode int, err error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.maxUnav, ch.maxTwo, ch.maxPods, ch.err
}

// wasDeleted reports whether the pod was deleted while watched.
func (ch *checker) wasDeleted(uid types.UID) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.deleted[uid]
}

// current returns the live pods per node.
func (ch *checker) current() map[string][]*corev1.Pod {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	out := map[string][]*corev1.Pod{}
	for _, p := range ch.pods {
		if p.DeletionTimestamp == nil {
			out[podtemplate.NodeOf(p)] = append(out[podtemplate.NodeOf(p)], p)
		}
	}
	return out
}
