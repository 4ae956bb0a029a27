package plugin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/health"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

func newStatusCommand(o *options) *cobra.Command {
	var node, selector string
	var output *outputFlags
	cmd := &cobra.Command{
		Use:   "status NAME [--node NODE] [-l SELECTOR] [-o wide|name|json|yaml|jsonpath=...|go-template=...]",
		Short: "Show, node by node, the agent's revision and readiness, and why a node has none",
		Long: `Show every node with the set's agent on it: its revision, whether it is Ready and
available, and for a node without an agent, or one the rollout leaves alone,
the reason, computed by the controller's own eligibility and plan code.
With --node, also the resources each container of the agent gets on that
node (spec.nodeOverrides applied to the set's template).

-l/--selector keeps the nodes with those labels; -o wide adds the pod and its
images. -o name, json, yaml, jsonpath=... and go-template=... print the
NodeAgentSet itself, exactly as kubectl get nodeagentset NAME -o ... does.

Listing nodes needs cluster-wide RBAC. Without it, status says so and shows
what the set's pods tell: the nodes that run an agent, not the ones without.`,
		Example: `  # Why does node-7 run no agent?
  kubectl nodeagentset status node-exporter -n monitoring --node node-7
  # The GPU nodes only, with pod names and images
  kubectl nodeagentset status node-exporter -n monitoring -l gpu=true -o wide
  kubectl nodeagentset status node-exporter -n monitoring -o jsonpath='{.status.numberAvailable}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !output.table() {
				if node != "" || selector != "" {
					return fmt.Errorf("--node and --selector choose rows of the table; -o %s prints the NodeAgentSet itself", *output.OutputFormat)
				}
				return o.printSet(cmd, args[0], output)
			}
			nodeSelector, err := labels.Parse(selector)
			if err != nil {
				return fmt.Errorf("--selector: %w", err)
			}
			c, set, err := o.getSet(cmd, args[0])
			if err != nil {
				return err
			}
			rows, err := o.statusRows(cmd.Context(), c, set, nodeSelector, time.Now())
			if err != nil {
				return err
			}
			if node != "" {
				rows = filter(rows, node)
				if len(rows) == 0 {
					return fmt.Errorf("node %q not found", node)
				}
				if rows[0].Resources, err = nodeResources(cmd.Context(), c, set, node); err != nil {
					return err
				}
			}
			if set.Spec.Suspend {
				fmt.Fprintf(o.streams.Out, "%s is Suspended (spec.suspend): its agents are removed and none is placed\n", kind(set))
			}
			if err := Render(o.streams.Out, rows, output.wide()); err != nil || len(rows) != 1 || rows[0].Resources == nil {
				return err
			}
			fmt.Fprintln(o.streams.Out)
			return RenderResources(o.streams.Out, rows[0].Resources)
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "show only this node")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "show only the nodes with these labels (a label selector: -l 'pool=gpu,zone in (a,b)')")
	output = addOutputFlags(cmd, "wide")
	return cmd
}

// printSet prints the set as kubectl get does for the same -o.
func (o *options) printSet(cmd *cobra.Command, name string, output *outputFlags) error {
	printer, err := output.printer()
	if err != nil {
		return err
	}
	c, ns, err := o.client()
	if err != nil {
		return err
	}
	u, err := unstructuredSet(cmd, c, client.ObjectKey{Namespace: ns, Name: name})
	if err != nil {
		return err
	}
	return printer.PrintObj(u, o.streams.Out)
}

// statusRows reads what the controller reads and turns its plan into rows.
// Nodes are the one cluster-scoped read: a user whose RBAC stops at the
// namespace gets, with a warning, the rows the set's pods can tell.
func (o *options) statusRows(ctx context.Context, c client.Client, set *nasv1alpha1.NodeAgentSet, nodeSelector labels.Selector, now time.Time) ([]Row, error) {
	snap, err := observe(ctx, c, set, now)
	if err != nil {
		return nil, err
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		if !apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("listing nodes: %w", err)
		}
		if !nodeSelector.Empty() {
			return nil, fmt.Errorf("--selector needs permission to list nodes: %w", err)
		}
		fmt.Fprintf(o.streams.ErrOut, "Warning: nodes could not be read (%v).\nShowing the nodes that run an agent, from its pods; nodes without one are not listed.\n", err)
		return PodRows(set, snap.Pods, snap.UpdateHash, now), nil
	}
	shown := map[string]bool{}
	for i := range nodes.Items {
		snap.Nodes = append(snap.Nodes, &nodes.Items[i])
		shown[nodes.Items[i].Name] = nodeSelector.Matches(labels.Set(nodes.Items[i].Labels))
	}
	// The plan needs every node (budgets count them all); the selector
	// only chooses which rows are shown.
	rows := Rows(set, plan.Compute(snap), snap.UpdateHash, now)
	if nodeSelector.Empty() {
		return rows, nil
	}
	return slices.DeleteFunc(rows, func(r Row) bool { return !shown[r.Node] }), nil
}

// observe reads the namespaced part of what the controller reads: the
// set's pods and its update revision.
func observe(ctx context.Context, c client.Client, set *nasv1alpha1.NodeAgentSet, now time.Time) (plan.Snapshot, error) {
	selector, err := metav1.LabelSelectorAsSelector(set.Spec.Selector.AsMeta())
	if err != nil {
		return plan.Snapshot{}, err
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(set.Namespace), client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		return plan.Snapshot{}, fmt.Errorf("listing the set's pods: %w", err)
	}
	hash, err := updateHash(ctx, c, set)
	if err != nil {
		return plan.Snapshot{}, err
	}
	snap := plan.Snapshot{Set: set, Selector: selector, UpdateHash: hash, Now: now}
	for i := range pods.Items {
		snap.Pods = append(snap.Pods, &pods.Items[i])
	}
	return snap, nil
}

// updateHash is the hash of the revision holding the set's template.
func updateHash(ctx context.Context, c client.Client, set *nasv1alpha1.NodeAgentSet) (string, error) {
	history, err := history(ctx, c, set)
	if err != nil {
		return "", err
	}
	encoded, err := revision.EncodeSpec(revision.SpecOf(set))
	if err != nil {
		return "", err
	}
	if cr := revision.FindEqual(history, encoded); cr != nil {
		return revision.HashOf(cr), nil
	}
	return revision.Hash(encoded, set.Status.CollisionCount), nil
}

// history lists the set's revisions, oldest first.
func history(ctx context.Context, c client.Client, set *nasv1alpha1.NodeAgentSet) ([]*appsv1.ControllerRevision, error) {
	var list appsv1.ControllerRevisionList
	if err := c.List(ctx, &list, client.InNamespace(set.Namespace), client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		return nil, err
	}
	return revision.Owned(list.Items, set.UID), nil
}

// Row is one node of the status table.
type Row struct {
	Node, Revision, Ready, Available, Reason string
	// Shown with -o wide.
	Pod, Images string
	// Resources are the agent's computed resources on this node, node
	// overrides applied; only with --node.
	Resources []ContainerResources
}

// Rows turns a plan into the status table, one row per node.
func Rows(set *nasv1alpha1.NodeAgentSet, p plan.Plan, updateHash string, now time.Time) []Row {
	minReady := time.Duration(set.Spec.MinReadySeconds) * time.Second
	deleting := map[string]string{}
	for _, d := range p.Deletes {
		deleting[string(d.Pod.UID)] = d.Reason
	}
	creating := map[string]string{}
	for _, c := range p.Creates {
		creating[c.Node] = c.Reason
	}
	var rows []Row
	for _, st := range p.Nodes {
		pod := st.New
		if pod == nil {
			pod = st.Old
		}
		if hold := p.Stage.Holds[st.Name]; st.Held == "" && hold != "" {
			// A failed check puts nodes on the current revision (the plan
			// then has nothing to do there), yet the stage still holds them
			// from the update revision: say so, not "to be updated".
			st.Held = hold
		}
		r := agentRow(st.Name, pod, updateHash, minReady, now)
		r.Reason = reason(st, pod, deleting, creating, updateHash)
		if r.Reason == "up to date" {
			r.Reason = running(pod, r.Available == "yes")
		}
		rows = append(rows, r)
	}
	return rows
}

// PodRows is the table without nodes (the user may not list them): one
// row per node that runs a pod of the set, with what the pod alone says.
func PodRows(set *nasv1alpha1.NodeAgentSet, pods []*corev1.Pod, updateHash string, now time.Time) []Row {
	minReady := time.Duration(set.Spec.MinReadySeconds) * time.Second
	var rows []Row
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		r := agentRow(cmp.Or(podtemplate.NodeOf(pod), "(unscheduled)"), pod, updateHash, minReady, now)
		r.Reason = "old revision"
		if podtemplate.Hash(pod) == updateHash {
			r.Reason = running(pod, r.Available == "yes")
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b Row) int { return cmp.Compare(a.Node, b.Node) })
	return rows
}

// agentRow fills in what a node's agent pod says; nil leaves dashes.
func agentRow(node string, pod *corev1.Pod, updateHash string, minReady time.Duration, now time.Time) Row {
	r := Row{Node: node, Revision: "-", Ready: "-", Available: "-", Pod: "-", Images: "-"}
	if pod == nil {
		return r
	}
	r.Revision = podtemplate.Hash(pod)
	if r.Revision == updateHash {
		r.Revision += " (update)"
	}
	_, ready := plan.ReadySince(pod)
	r.Ready, r.Available = yesNo(ready), yesNo(plan.PodAvailable(pod, minReady, now))
	r.Pod = pod.Name
	var images []string
	for _, c := range pod.Spec.Containers {
		images = append(images, c.Image)
	}
	r.Images = strings.Join(images, ",")
	return r
}

func reason(st plan.NodeState, pod *corev1.Pod, deleting, creating map[string]string, updateHash string) string {
	switch {
	case !st.Exists:
		return "node does not exist; its pods are being deleted"
	case pod == nil && creating[st.Name] != "":
		return "pending: " + creating[st.Name]
	case pod == nil && st.Waiting != "":
		return st.Waiting
	case pod == nil:
		return st.Eligibility.Reason
	case !st.Eligibility.ShouldContinueRunning:
		return "being removed: " + st.Eligibility.Reason
	case deleting[string(pod.UID)] != "":
		return "replacing: " + deleting[string(pod.UID)]
	case st.Charged != "":
		return st.Charged
	case st.Skipped != "":
		return st.Skipped
	case st.Old != nil && st.New != nil:
		return "surging: new agent starting next to the old one"
	case podtemplate.Hash(pod) != updateHash && st.Held != "":
		return st.Held
	case podtemplate.Hash(pod) != updateHash && st.Waiting != "":
		return st.Waiting
	case !st.Eligibility.ShouldRun:
		return "keeps running; new agents not placed: " + st.Eligibility.Reason
	case podtemplate.Hash(pod) != updateHash:
		return "to be updated"
	}
	return "up to date"
}

// running says whether an agent of the update revision really runs: a
// pod that is Pending, crash-looping or not Ready is not "up to date" yet.
func running(pod *corev1.Pod, available bool) string {
	if c, ok := health.Of(pod); ok {
		return "not running: " + c.Message
	}
	if _, ready := plan.ReadySince(pod); !ready {
		if pod.Status.Phase == corev1.PodPending || pod.Status.Phase == "" {
			return "starting: pod pending"
		}
		return "starting: not Ready yet"
	}
	if !available {
		return "up to date; available once Ready for minReadySeconds"
	}
	return "up to date"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func filter(rows []Row, node string) []Row {
	for _, r := range rows {
		if r.Node == node {
			return []Row{r}
		}
	}
	return nil
}

// Render writes the table as kubectl does: upper-case headers, aligned;
// wide adds the pod and its images, as kubectl get -o wide adds columns.
func Render(w io.Writer, rows []Row, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header := []string{"NODE", "REVISION", "READY", "AVAILABLE", "REASON"}
	if wide {
		header = append(header, "POD", "IMAGES")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := []string{r.Node, r.Revision, r.Ready, r.Available, r.Reason}
		if wide {
			cells = append(cells, r.Pod, r.Images)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
