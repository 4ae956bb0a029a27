package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

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
	// maxTwins is the most live pods of one revision seen on one node.
	maxTwins int
	rv       string
	deleted  map[types.UID]bool
	changed  chan struct{}
	// each, when set, is called with the live pods by node at every pod
	// event (under the checker's lock: it must not call back).
	each func(map[string][]*corev1.Pod)
}

// setEach installs each (see checker.each) and runs it once now.
func (ch *checker) setEach(each func(map[string][]*corev1.Pod)) {
	ch.mu.Lock()
	ch.each = each
	ch.mu.Unlock()
	ch.observe()
}

func watchPods(t *testing.T, cs kubernetes.Interface, set *nasv1alpha1.NodeAgentSet, desired []string) *checker {
	t.Helper()
	return watchSelected(t, cs, set.Namespace, nasv1alpha1.LabelSetName+"="+set.Name, desired)
}

// watchSelected is watchPods for the pods a label selector matches (a
// DaemonSet's, which carry no set-name label).
func watchSelected(t *testing.T, cs kubernetes.Interface, ns, sel string, desired []string) *checker {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	ch := &checker{nodes: map[string]bool{}, pods: map[types.UID]*corev1.Pod{}, deleted: map[types.UID]bool{}, changed: make(chan struct{}, 1)}
	for _, n := range desired {
		ch.nodes[n] = true
	}
	if err := ch.list(ctx, cs, ns, sel); err != nil {
		t.Fatal(err)
	}
	go ch.follow(ctx, cs, ns, sel)
	return ch
}

// list replaces the checker's view with a fresh list and returns its
// resource version for the next watch.
func (ch *checker) list(ctx context.Context, cs kubernetes.Interface, ns, sel string) error {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return err
	}
	ch.mu.Lock()
	ch.pods = map[types.UID]*corev1.Pod{}
	for i := range list.Items {
		ch.pods[list.Items[i].UID] = &list.Items[i]
	}
	ch.rv = list.ResourceVersion
	ch.mu.Unlock()
	ch.observe()
	return nil
}

// follow applies watch events in order; when the watch breaks (an API
// server restart) it lists again and resumes.
func (ch *checker) follow(ctx context.Context, cs kubernetes.Interface, ns, sel string) {
	for ctx.Err() == nil {
		ch.mu.Lock()
		rv := ch.rv
		ch.mu.Unlock()
		w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: rv})
		if err == nil {
			ch.consume(w)
		}
		if ctx.Err() != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
		_ = ch.list(ctx, cs, ns, sel) // the API server may still be down; retried next round
	}
}

func (ch *checker) consume(w watch.Interface) {
	defer w.Stop()
	for ev := range w.ResultChan() {
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return // an error event: list and watch again
		}
		ch.mu.Lock()
		if ev.Type == watch.Deleted {
			delete(ch.pods, pod.UID)
			ch.deleted[pod.UID] = true
		} else {
			ch.pods[pod.UID] = pod
		}
		ch.rv = pod.ResourceVersion
		ch.mu.Unlock()
		ch.observe()
	}
}

// observe measures the current state and keeps the worst.
func (ch *checker) observe() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	perNode, liveNode := map[string]int{}, map[string]int{}
	available := map[string]bool{}
	twins := map[[2]string]int{}
	for _, p := range ch.pods {
		n := podtemplate.NodeOf(p)
		perNode[n]++
		if p.DeletionTimestamp == nil {
			liveNode[n]++
			available[n] = available[n] || podReady(p)
			key := [2]string{n, podtemplate.Hash(p)}
			twins[key]++
			ch.maxTwins = max(ch.maxTwins, twins[key])
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
	if ch.each != nil {
		live := map[string][]*corev1.Pod{}
		for _, p := range ch.pods {
			if p.DeletionTimestamp == nil {
				live[podtemplate.NodeOf(p)] = append(live[podtemplate.NodeOf(p)], p)
			}
		}
		ch.each(live)
	}
	select {
	case ch.changed <- struct{}{}:
	default:
	}
}

// worst returns the worst values seen so far.
func (ch *checker) worst() (unavailable, twoPods, podsOnANode int) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.maxUnav, ch.maxTwo, ch.maxPods
}

// worstTwins is the most live pods of one revision seen on one node.
func (ch *checker) worstTwins() int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.maxTwins
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
