package plugin

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// ContainerResources is what one container of the agent asks for on a
// node, node overrides applied.
type ContainerResources struct {
	Container        string
	Requests, Limits map[string]string
}

// Resources computes the resources of the agent the set's template gives
// node: what the controller puts in a pod it creates there (the same
// podtemplate.ForNode), so a user can see what resourcesFromAllocatable
// and the selectors of nodeOverrides made of this node's allocatable.
func Resources(set *nasv1alpha1.NodeAgentSet, node *corev1.Node) ([]ContainerResources, error) {
	t, err := podtemplate.ForNode(&set.Spec.Template, set.Spec.NodeOverrides, node)
	if err != nil {
		return nil, fmt.Errorf("applying the node overrides for Node %q: %w", node.Name, err)
	}
	out := make([]ContainerResources, 0, len(t.Spec.Containers))
	for _, c := range t.Spec.Containers {
		out = append(out, ContainerResources{Container: c.Name,
			Requests: quantities(c.Resources.Requests), Limits: quantities(c.Resources.Limits)})
	}
	return out, nil
}

func quantities(l corev1.ResourceList) map[string]string {
	if len(l) == 0 {
		return nil
	}
	out := make(map[string]string, len(l))
	for name, q := range l {
		out[string(name)] = q.String()
	}
	return out
}

// RenderResources writes the containers' resources as a table, each list
// as name=quantity in name order ("-" when empty).
func RenderResources(w io.Writer, containers []ContainerResources) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tREQUESTS\tLIMITS")
	for _, c := range containers {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Container, joinQuantities(c.Requests), joinQuantities(c.Limits))
	}
	return tw.Flush()
}

func joinQuantities(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + m[n]
	}
	return strings.Join(parts, ",")
}

// nodeResources reads node and computes the agent's resources there; nil
// when the node is gone or the user may not read nodes (status then shows
// what the pods tell, without resources).
func nodeResources(ctx context.Context, c client.Client, set *nasv1alpha1.NodeAgentSet, name string) ([]ContainerResources, error) {
	var node corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Node %q: %w", name, err)
	}
	return Resources(set, &node)
}
