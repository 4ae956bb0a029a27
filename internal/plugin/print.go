package plugin

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// outputFlags are kubectl's -o flags (its PrintFlags: name, json, yaml,
// jsonpath, go-template, ...) on a command whose own table is the default;
// tables are the formats the command prints itself (wide).
type outputFlags struct {
	*genericclioptions.PrintFlags
	tables []string
}

func addOutputFlags(cmd *cobra.Command, tables ...string) *outputFlags {
	f := &outputFlags{PrintFlags: genericclioptions.NewPrintFlags("").WithTypeSetter(scheme), tables: tables}
	f.AddFlags(cmd)
	formats := append(slices.Clone(tables), f.AllowedFormats()...)
	cmd.Flags().Lookup("output").Usage = fmt.Sprintf("Output format. One of: (%s). Without -o: a table.", strings.Join(formats, ", "))
	return f
}

// table says whether the command prints its own table rather than objects.
func (f *outputFlags) table() bool {
	return *f.OutputFormat == "" && !f.templateGiven() || slices.Contains(f.tables, *f.OutputFormat)
}

// templateGiven: kubectl prints with --template even without -o.
func (f *outputFlags) templateGiven() bool {
	t := f.TemplatePrinterFlags.TemplateArgument
	return t != nil && *t != ""
}

func (f *outputFlags) wide() bool { return *f.OutputFormat == "wide" }

// printer is kubectl's printer for the -o given; asked for before anything
// is read, so that a wrong format fails first.
func (f *outputFlags) printer() (printers.ResourcePrinter, error) { return f.ToPrinter() }

// unstructuredSet reads the set as kubectl get does: the server's object,
// not a round trip through the Go types (which would add empty fields and
// order the keys differently from kubectl's output).
func unstructuredSet(cmd *cobra.Command, c client.Client, key client.ObjectKey) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(nasv1alpha1.GroupVersion.WithKind("NodeAgentSet"))
	err := c.Get(cmd.Context(), key, u)
	return u, err
}
