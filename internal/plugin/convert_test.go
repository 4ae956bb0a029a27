package plugin

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// A surging DaemonSet never takes an available agent down first; the
// converted set must say maxUnavailable 0 rather than inherit our
// default of 1.
// convertOne converts a file holding one DaemonSet and reads the set back.
func convertOne(t *testing.T, ds string) (nasv1alpha1.NodeAgentSet, []byte) {
	t.Helper()
	out, err := Convert([]byte(ds))
	if err != nil {
		t.Fatal(err)
	}
	var set nasv1alpha1.NodeAgentSet
	if err := yaml.UnmarshalStrict(out, &set); err != nil {
		t.Fatal(err)
	}
	return set, out
}

func TestConvertKeepsASurgingDaemonSetsMeaning(t *testing.T) {
	ds := `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: agent:1}]}
`
	set, out := convertOne(t, ds)
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" || ru.MaxSurge.String() != "1" {
		t.Fatalf("rollingUpdate = %+v, want maxSurge 1 and maxUnavailable 0:\n%s", ru, out)
	}
	if !strings.Contains(string(out), "maxUnavailable: 0") {
		t.Fatalf("output does not say maxUnavailable 0:\n%s", out)
	}
}

// A surging DaemonSet whose agent holds a host port (it stalls: k/k
// #106417) converts to one node at a time, which the CRD accepts.
func TestConvertDropsASurgeThatCannotBindItsHostPort(t *testing.T) {
	ds := `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: agent:1, ports: [{containerPort: 9100, hostPort: 9100}]}]}
`
	set, out := convertOne(t, ds)
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxSurge.String() != "0" || ru.MaxUnavailable.String() != "1" {
		t.Fatalf("rollingUpdate = %+v, want maxSurge 0 and maxUnavailable 1:\n%s", ru, out)
	}
}

// A manifest as projects ship it: the DaemonSet becomes a NodeAgentSet,
// every other document comes out byte for byte (comments included), the
// empty document is dropped, and the order is kept.
func TestConvertPassesAShippedManifestThrough(t *testing.T) {
	in := readFile(t, "testdata/calico.yaml")
	out, err := Convert(in)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "---\n")
	var kinds []string
	for _, d := range docs {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(d), &head); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, d)
		}
		kinds = append(kinds, head.Kind)
	}
	want := []string{"PodDisruptionBudget", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "NodeAgentSet", "Deployment"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Fatalf("kinds %v, want %v:\n%s", kinds, want, out)
	}
	for _, i := range []int{0, 1, 2, 3, 5} {
		if !strings.Contains(string(in), strings.TrimRight(docs[i], "\n")) {
			t.Errorf("document %d was changed:\n%s", i+1, docs[i])
		}
	}
	if !strings.Contains(docs[0], "maxUnavailable: 1") || !strings.Contains(docs[2], "# Used to discover service IPs") {
		t.Errorf("passed-through documents lost their text:\n%s", out)
	}
	var set nasv1alpha1.NodeAgentSet
	if err := yaml.UnmarshalStrict([]byte(docs[4]), &set); err != nil {
		t.Fatal(err)
	}
	if set.Name != "cni-node" || set.Namespace != "kube-system" || !set.Spec.Template.Spec.HostNetwork ||
		set.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("converted set:\n%s", docs[4])
	}
}

// Several DaemonSets in one file, one of them inside a List: all converted,
// the List kept with its other item.
func TestConvertEveryDaemonSetOfAFile(t *testing.T) {
	out, err := Convert(readFile(t, "testdata/agents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "---\n")
	if len(docs) != 3 {
		t.Fatalf("%d documents, want 3:\n%s", len(docs), out)
	}
	for i, name := range []string{"log-agent", "metrics-agent"} {
		var set nasv1alpha1.NodeAgentSet
		if err := yaml.UnmarshalStrict([]byte(docs[i]), &set); err != nil || set.Kind != "NodeAgentSet" || set.Name != name {
			t.Errorf("document %d is not NodeAgentSet %s (%v):\n%s", i+1, name, err, docs[i])
		}
	}
	var list struct {
		Kind  string
		Items []nasv1alpha1.NodeAgentSet
	}
	if err := yaml.Unmarshal([]byte(docs[2]), &list); err != nil || list.Kind != "List" || len(list.Items) != 2 {
		t.Fatalf("the List (%v):\n%s", err, docs[2])
	}
	if list.Items[0].Kind != "ConfigMap" || list.Items[1].Kind != "NodeAgentSet" || list.Items[1].Spec.UpdateStrategy.RollingUpdate.MaxSurge.String() != "1" {
		t.Errorf("the List's items:\n%s", docs[2])
	}
}

// An error names the document: its number, line, kind and name.
func TestConvertErrorsNameTheDocument(t *testing.T) {
	for in, want := range map[string]string{
		"kind: ServiceAccount\napiVersion: v1\nmetadata: {name: sa}\n---\n# the agent\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a, namespace: ns}\nspec: {selecter: {}}\n": `document 2 (line 5, DaemonSet ns/a): reading the DaemonSet: error unmarshaling JSON: while decoding JSON: json: unknown field "selecter"`,
		"---\napiVersion: extensions/v1beta1\nkind: DaemonSet\nmetadata: {name: old}\n":                                                                                                  `document 1 (line 2, DaemonSet old): apiVersion "extensions/v1beta1": only apps/v1 DaemonSets can be converted`,
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: apps/v1, kind: DaemonSet, metadata: {name: x}, spec: {bad: 1}}\n":                                                            `document 1 (line 1, List): item 1, DaemonSet x: reading the DaemonSet`,
		"a: [\n": "document 1 (line 1): not YAML",
	} {
		_, err := Convert([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Convert(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

// convert -f - reads standard input; -f may be repeated.
func TestConvertCommandReadsStandardInputAndSeveralFiles(t *testing.T) {
	streams := testStreams()
	streams.In.(*bytes.Buffer).Write(readFile(t, "testdata/agents.yaml"))
	cmd := NewCommand(streams)
	cmd.SetArgs([]string{"convert", "-f", "-", "-f", "testdata/calico.yaml"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	out := streams.Out.(*bytes.Buffer).String()
	if n := strings.Count(out, "kind: NodeAgentSet"); n != 4 {
		t.Errorf("%d NodeAgentSets, want 4:\n%s", n, out)
	}
	cmd = NewCommand(testStreams())
	cmd.SetArgs([]string{"convert", "-f", "testdata/agents.yaml", "-f", "testdata/missing.yaml"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("a missing file: %v", err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
