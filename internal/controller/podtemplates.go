package controller

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// podTemplates answers, for one pass, which template a node's pod is built
// from under a revision (node overrides applied to the node's labels and
// allocatable): the executor asks for the update revision when it creates
// pods, inplace.Convert for the old and new revisions of a node it may
// update in place. Revisions are decoded, and nodes indexed, only when
// first asked for: most passes ask for neither.
type podTemplates struct {
	set        *nasv1alpha1.NodeAgentSet
	updateHash string
	revs       revisions
	nodes      []*corev1.Node

	once   sync.Once
	byName map[string]*corev1.Node
	mu     sync.Mutex
	specs  map[string]*revision.Spec
}

func newPodTemplates(set *nasv1alpha1.NodeAgentSet, revs revisions, updateHash string, nodes []*corev1.Node) *podTemplates {
	pt := &podTemplates{set: set, updateHash: updateHash, nodes: nodes,
		specs: map[string]*revision.Spec{updateHash: revision.SpecOf(set)}}
	pt.revs = revs
	return pt
}

func (pt *podTemplates) node(name string) *corev1.Node {
	pt.once.Do(func() {
		pt.byName = make(map[string]*corev1.Node, len(pt.nodes))
		for _, n := range pt.nodes {
			pt.byName[n.Name] = n
		}
	})
	return pt.byName[name]
}

// spec is the revision spec of hash, decoded once per pass.
func (pt *podTemplates) spec(hash string) *revision.Spec {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if s, ok := pt.specs[hash]; ok {
		return s
	}
	var found *revision.Spec
	for _, cr := range pt.revs.history {
		if revision.HashOf(cr) == hash {
			if s, err := revision.DecodeSpec(cr); err == nil {
				found = s
			}
			break
		}
	}
	pt.specs[hash] = found
	return found
}

// forNode is the template of revision hash for node; ok is false when the
// revision or the node is unknown, or the overrides do not apply.
func (pt *podTemplates) forNode(hash, node string) (*corev1.PodTemplateSpec, bool) {
	s, n := pt.spec(hash), pt.node(node)
	if s == nil || n == nil {
		return nil, false
	}
	t, err := podtemplate.ForNode(&s.Template, s.NodeOverrides, n)
	return t, err == nil
}

// build is the template of revision hash for a new pod on node: the
// update revision's, or another one the plan names (the current revision,
// while a staged rollout's check has failed).
func (pt *podTemplates) build(node, hash string) (*corev1.PodTemplateSpec, error) {
	if hash == pt.updateHash {
		return pt.update(node)
	}
	s := pt.spec(hash)
	if s == nil {
		return nil, fmt.Errorf("no readable ControllerRevision of hash %q", hash)
	}
	if n := pt.node(node); n != nil {
		return podtemplate.ForNode(&s.Template, s.NodeOverrides, n)
	}
	return &s.Template, nil
}

// update is the template of the update revision for a new pod on node.
func (pt *podTemplates) update(node string) (*corev1.PodTemplateSpec, error) {
	n := pt.node(node)
	if n == nil {
		// The node left the cache since the plan was made: no override
		// can be judged; the pod is created from the template as is and
		// is removed with its node.
		return &pt.set.Spec.Template, nil
	}
	return podtemplate.ForNode(&pt.set.Spec.Template, pt.set.Spec.NodeOverrides, n)
}
