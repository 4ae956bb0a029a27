// Package plugin is the kubectl plugin `kubectl nodeagentset`: rollouts
// (status, history, undo, pause, resume, restart), a per-node status that
// says why a node has no agent, and conversion of DaemonSets. Its answers
// come from the same eligibility and plan code the controller runs.
package plugin

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// options are what every command shares: kubectl's connection flags and
// the output streams.
type options struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
}

// NewCommand is `kubectl nodeagentset`.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{flags: genericclioptions.NewConfigFlags(true), streams: streams}
	root := &cobra.Command{
		Use: "kubectl-nodeagentset",
		// Help and usage lines read "kubectl nodeagentset ...", as users type it.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl nodeagentset"},
		Short:       "Manage NodeAgentSets: rollouts, per-node status, conversion from DaemonSets",
		Long: `Manage NodeAgentSets (nodeagentset.io/v1alpha1, short name nas).

kubectl rollout does not work on custom resources; this plugin does the same
for NodeAgentSets, and shows, node by node, why a node runs no agent.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	o.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(newRolloutCommand(o), newStatusCommand(o), newConvertCommand(o), newMigrateCommand(o))
	return root
}

// client connects with the kubectl flags (--kubeconfig, --context, ...).
func (o *options) client() (client.WithWatch, string, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	return c, ns, err
}

// scheme knows the types the plugin reads; printers use it to set an
// object's apiVersion and kind, as kubectl's do.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(nasv1alpha1.AddToScheme(s))
	return s
}()

func (o *options) getSet(cmd *cobra.Command, name string) (client.WithWatch, *nasv1alpha1.NodeAgentSet, error) {
	c, ns, err := o.client()
	if err != nil {
		return nil, nil, err
	}
	set := &nasv1alpha1.NodeAgentSet{}
	if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: name}, set); err != nil {
		return nil, nil, err
	}
	return c, set, nil
}

func (o *options) printf(format string, args ...any) {
	fmt.Fprintf(o.streams.Out, format, args...)
}

// kind is how the plugin names a set in messages, as kubectl does.
func kind(set *nasv1alpha1.NodeAgentSet) string { return "nodeagentset.nodeagentset.io/" + set.Name }
