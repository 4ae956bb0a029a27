package plugin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/health"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

func newStatusCommand(o *options) *cobra.Command {
	var node, output string
	cmd := &cobra.Command{
		Use:   "status NAME [--node NODE] [-o json|yaml]",
		Short: "Show, node by node, the agent's revision and readiness, and why a node has none",
		Long: `Show every node with the set's agent on it: its revision, whether it is Ready and
available, and for a node without an agent, or one the rollout leaves alone,
the reason, computed by the controller's own eligibility and plan code.
With --node, also the resources each container of the agent gets on that
node (spec.nodeOverrides applied to the set's template).`,
		Example: `  # Why does node-7 run no agent?
  kubectl nodeagentset status node-exporter -n monitoring --node node-7`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, set, err := o.getSet(cmd, args[0])
			if err != nil {
				return err
			}
			p, hash, err := planFor(cmd.Context(), c, set, time.Now())
			if err != nil {
				return err
			}
			rows := Rows(set, p, hash, time.Now())
			if node != "" {
				rows = filter(rows, node)
				if len(rows) == 0 {
					return fmt.Errorf("node %q not found", node)
				}
				if rows[0].Resources, err = nodeResources(cmd.Context(), c, set, node); err != nil {
					return err
				}
			}
			return printAs(o.streams.Out, output, rows, func() error {
				if err := Render(o.streams.Out, rows); err != nil || len(rows) != 1 || rows[0].Resources == nil {
					return err
				}
				fmt.Fprintln(o.streams.Out)
				return RenderResources(o.streams.Out, rows[0].Resources)
			})
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "show only this node")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (default: a table)")
	return cmd
}

// planFor reads what the controller reads and computes its plan.
func planFor(ctx context.Context, c client.Client, set *nasv1alpha1.NodeAgentSet, now time.Time) (plan.Plan, string, error) {
	selector, err := metav1.LabelSelectorAsSelector(set.Spec.Selector.AsMeta())
	if err != nil {
		return plan.Plan{}, "", err
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return plan.Plan{}, "", err
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(set.Namespace), client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		return plan.Plan{}, "", err
	}
	hash, err := updateHash(ctx, c, set)
	if err != nil {
		return plan.Plan{}, "", err
	}
	snap := plan.Snapshot{Set: set, Selector: selector, UpdateHash: hash, Now: now}
	for i := range nodes.Items {
		snap.Nodes = append(snap.Nodes, &nodes.Items[i])
	}
	for i := range pods.Items {
		snap.Pods = append(snap.Pods, &pods.Items[i])
	}
	return plan.Compute(snap), hash, nil
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
	Node      string `json:"node"`
	Revision  string `json:"revision"`
	Ready     string `json:"ready"`
	Available string `json:"available"`
	Reason    string `json:"reason"`
	// Resources are the agent's computed resources on this node, node
	// overrides applied; only with --node.
	Resources []ContainerResources `json:"resources,omitempty"`
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
		r := Row{Node: st.Name, Revision: "-", Ready: "-", Available: "-"}
		pod := st.New
		if pod == nil {
			pod = st.Old
		}
		if pod != nil {
			r.Revision = podtemplate.Hash(pod)
			if r.Revision == updateHash {
				r.Revision += " (update)"
			}
			_, ready := plan.ReadySince(pod)
			r.Ready, r.Available = yesNo(ready), yesNo(plan.PodAvailable(pod, minReady, now))
		}
		r.Reason = reason(st, pod, deleting, creating, updateHash)
		if r.Reason == "up to date" {
			r.Reason = running(pod, r.Available == "yes")
		}
		rows = append(rows, r)
	}
	return rows
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

// Render writes the table as kubectl does: upper-case headers, aligned.
func Render(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join([]string{"NODE", "REVISION", "READY", "AVAILABLE", "REASON"}, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join([]string{r.Node, r.Revision, r.Ready, r.Available, r.Reason}, "\t"))
	}
	return tw.Flush()
}
