// Package plan is the pure core of the controller: from a snapshot of one
// NodeAgentSet, its nodes and its pods at a moment, it computes what to
// create, delete, adopt and release, each with a reason a person can read.
// It never talks to the API server and takes the time as an argument.
package plan

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/eligibility"
	"github.com/nodeagentset/nodeagentset/internal/nodehealth"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// Snapshot is everything a plan is computed from.
type Snapshot struct {
	Set *nasv1alpha1.NodeAgentSet
	// Selector is Set's selector, parsed.
	Selector labels.Selector
	Nodes    []*corev1.Node
	// Pods carrying the set's name label: owned, orphaned or owned by
	// someone else; terminating ones included.
	Pods []*corev1.Pod
	// UpdateHash is the hash of the revision of the current template.
	UpdateHash string
	Now        time.Time
	// Backoff maps a node to the moment before which a failed agent there is
	// left in place rather than replaced.
	Backoff map[string]time.Time
}

// currentHash is the hash of the set's current revision (named
// <set>-<hash>), the one its rollout started from; empty before the first.
func (s Snapshot) currentHash() string {
	name := s.Set.Status.CurrentRevision
	if rest, ok := strings.CutPrefix(name, s.Set.Name+"-"); ok {
		return rest
	}
	return ""
}

// unhealthyPolicy is the set's rollingUpdate.unhealthyNodes, Skip when
// unset (a set stored before the field had a default).
func unhealthyPolicy(set *nasv1alpha1.NodeAgentSet) nasv1alpha1.UnhealthyNodesPolicy {
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.UnhealthyNodes != "" {
		return ru.UnhealthyNodes
	}
	return nasv1alpha1.UnhealthyNodesSkip
}

// NodeState is what the plan saw on one node and made of it.
type NodeState struct {
	Name string
	// Exists is false for a node that is gone but still has pods.
	Exists      bool
	Eligibility eligibility.Result
	// Active pods are neither terminating nor finished, oldest first.
	Active []*corev1.Pod
	// Finished pods (Failed or Succeeded) not yet deleted.
	Finished []*corev1.Pod
	// Terminating counts pods being deleted; they still occupy the node.
	Terminating int
	// Stuck counts pods Terminating past their grace period on an
	// unhealthy node, which with unhealthyNodes Skip do not occupy it: no
	// kubelet may ever finish them (k/k #63465).
	Stuck int
	// Health is the node's health (zero for a healthy or vanished node).
	Health nodehealth.Health
	// Skipped says why the rollout passes this unhealthy node by (its agent
	// neither uses the budget nor blocks completion), Charged why the node's
	// missing agent is charged to the budget although the node is unhealthy.
	// Both are empty unless unhealthyNodes is Skip and the node unhealthy.
	Skipped, Charged string
	// New and Old are the active pods kept on the node: at most one of the
	// update revision and one of any other.
	New, Old *corev1.Pod
	// Waiting says why the plan holds back on this node, if it does.
	Waiting string
	// Held says why the rollout leaves this node's old agent in place
	// (partition, rollingUpdate.nodeSelector, paused, a taint, a stage).
	Held string
	// labels are the node's, for the stage machine.
	labels map[string]string
}

// occupied counts the pods on the node, terminating ones included: a node
// never gets a pod that would make it three.
func (st *NodeState) occupied() int { return len(st.Active) + len(st.Finished) + st.Terminating }

// claim splits the snapshot's pods into the ones the set manages (owned
// and matching, or orphans it adopts) and the changes of ownership.
func claim(s Snapshot) (managed, adopt, release []*corev1.Pod) {
	for _, pod := range s.Pods {
		ref := metav1.GetControllerOfNoCopy(pod)
		matches := s.Selector.Matches(labels.Set(pod.Labels))
		switch {
		case ref != nil && ref.UID == s.Set.UID:
			if matches || pod.DeletionTimestamp != nil {
				managed = append(managed, pod)
			} else {
				release = append(release, pod)
			}
		case ref == nil && matches && pod.DeletionTimestamp == nil && s.Set.DeletionTimestamp == nil:
			managed = append(managed, pod)
			adopt = append(adopt, pod)
		}
	}
	return managed, adopt, release
}

// nodeStates groups the managed pods by node: every existing node, sorted
// by name, then every vanished node that still has pods.
func nodeStates(s Snapshot, managed []*corev1.Pod) []NodeState {
	byNode := make(map[string][]*corev1.Pod, len(managed))
	for _, pod := range managed {
		n := podtemplate.NodeOf(pod)
		byNode[n] = append(byNode[n], pod)
	}
	// Sorting the nodes, not the (much larger) states, was a quarter of a
	// 1000-node plan's time.
	nodes := slices.Clone(s.Nodes)
	slices.SortFunc(nodes, func(a, b *corev1.Node) int { return compareStrings(a.Name, b.Name) })
	spec := podtemplate.AgentSpec(s.Set)
	skip := unhealthyPolicy(s.Set) == nasv1alpha1.UnhealthyNodesSkip
	states := make([]NodeState, 0, len(nodes))
	for _, node := range nodes {
		st := NodeState{Name: node.Name, Exists: true, Eligibility: eligibility.Evaluate(node, spec), Health: nodehealth.Of(node), labels: node.Labels}
		st.Active, st.Finished, st.Terminating = split(byNode[node.Name])
		if skip && st.Health.Unhealthy() {
			for _, p := range byNode[node.Name] {
				if p.DeletionTimestamp != nil && s.Now.After(p.DeletionTimestamp.Time) {
					st.Stuck++
					st.Terminating--
				}
			}
		}
		delete(byNode, node.Name)
		states = append(states, st)
	}
	gone := make([]NodeState, 0, len(byNode))
	for name, pods := range byNode {
		st := NodeState{Name: name, Eligibility: eligibility.Result{Reason: "node does not exist"}}
		st.Active, st.Finished, _ = split(pods)
		// Terminating pods on a vanished node stay until deleted for good:
		// no kubelet is left to finish them.
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				st.Finished = append(st.Finished, p)
			}
		}
		gone = append(gone, st)
	}
	slices.SortFunc(gone, func(a, b NodeState) int { return compareStrings(a.Name, b.Name) })
	return append(states, gone...)
}

// split counts terminating pods and separates finished ones from active
// ones, each oldest first.
func split(pods []*corev1.Pod) (active, finished []*corev1.Pod, terminating int) {
	for _, p := range pods {
		switch {
		case p.DeletionTimestamp != nil:
			terminating++
		case p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded:
			finished = append(finished, p)
		default:
			active = append(active, p)
		}
	}
	slices.SortFunc(active, olderFirst)
	slices.SortFunc(finished, olderFirst)
	return active, finished, terminating
}

func olderFirst(a, b *corev1.Pod) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return compareStrings(a.Name, b.Name)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
