package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// stores reads nodes and pods straight from the informers' stores: pointers
// to the cached objects, neither deep-copied nor shallow-copied into a list.
// A pass reads every node; at 1000 nodes even the shallow copies
// controller-runtime's List makes were a third of a pass. The objects are
// shared with the cache: nothing may write into them.
type stores struct {
	nodes, pods toolscache.Indexer
	// sets holds NodeAgentSets unstructured (see decodeSet).
	sets toolscache.Indexer
}

func newStores(ctx context.Context, c cache.Cache) (*stores, error) {
	indexer := func(obj client.Object) (toolscache.Indexer, error) {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return nil, err
		}
		shared, ok := inf.(toolscache.SharedIndexInformer)
		if !ok {
			return nil, fmt.Errorf("informer for %T has no store (%T)", obj, inf)
		}
		return shared.GetIndexer(), nil
	}
	nodes, err := indexer(&corev1.Node{})
	if err != nil {
		return nil, err
	}
	pods, err := indexer(&corev1.Pod{})
	if err != nil {
		return nil, err
	}
	sets, err := indexer(newSetObject())
	if err != nil {
		return nil, err
	}
	return &stores{nodes: nodes, pods: pods, sets: sets}, nil
}

func (s *stores) listNodes() []*corev1.Node {
	objs := s.nodes.List()
	out := make([]*corev1.Node, 0, len(objs))
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			out = append(out, n)
		}
	}
	return out
}

// setKeys are the namespaced names of every cached set.
func (s *stores) setKeys() []types.NamespacedName {
	keys := s.sets.ListKeys()
	out := make([]types.NamespacedName, 0, len(keys))
	for _, k := range keys {
		if ns, name, err := toolscache.SplitMetaNamespaceKey(k); err == nil {
			out = append(out, types.NamespacedName{Namespace: ns, Name: name})
		}
	}
	return out
}

// listPods returns the pods of namespace ns carrying set's name label.
func (s *stores) listPods(ns, set string) ([]*corev1.Pod, error) {
	objs, err := s.pods.ByIndex(toolscache.NamespaceIndex, ns)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && p.Labels[nasv1alpha1.LabelSetName] == set {
			out = append(out, p)
		}
	}
	return out, nil
}
