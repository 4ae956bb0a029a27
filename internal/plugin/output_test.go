package plugin

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// The plugin prints objects with kubectl's own printers: for the same -o,
// `status` prints what `kubectl get nodeagentset` prints, byte for byte,
// and so does `rollout history` at the set's current revision (at an
// older one, the same object with that revision's template, as kubectl
// rollout history -o prints a DaemonSet).
// The outputs that do not carry a uid or timestamp are also checked in
// (testdata/*.golden), so a change of printer shows in review.
func TestOutputsMatchKubectl(t *testing.T) {
	c := apiServer(t)
	f := newFixture(t, "output", "RollingUpdate", "registry.example/agent:1", "registry.example/agent:2")
	f.status(t, settled(2, 3, false))

	for _, tc := range []struct {
		golden     string
		plugin     []string
		kubectl    []string
		notGoldens bool // carries uids and timestamps
	}{
		{golden: "status-name.golden", plugin: []string{"status", "agent", "-o", "name"}, kubectl: []string{"get", "nodeagentset", "agent", "-o", "name"}},
		{golden: "status-jsonpath.golden",
			plugin:  []string{"status", "agent", "-o", "jsonpath={.metadata.name} {.status.updatedNumberScheduled}/{.status.desiredNumberScheduled} {.spec.template.spec.containers[*].image}"},
			kubectl: []string{"get", "nas", "agent", "-o", "jsonpath={.metadata.name} {.status.updatedNumberScheduled}/{.status.desiredNumberScheduled} {.spec.template.spec.containers[*].image}"}},
		{golden: "status-go-template.golden",
			plugin:  []string{"status", "agent", "-o", "go-template={{.metadata.name}}{{range .status.conditions}} {{.type}}={{.status}}{{end}}{{\"\\n\"}}"},
			kubectl: []string{"get", "nas", "agent", "-o", "go-template={{.metadata.name}}{{range .status.conditions}} {{.type}}={{.status}}{{end}}{{\"\\n\"}}"}},
		{golden: "status-template-flag.golden",
			plugin:  []string{"status", "agent", "--template", "{{.spec.updateStrategy.type}}"},
			kubectl: []string{"get", "nas", "agent", "--template", "{{.spec.updateStrategy.type}}"}},
		{plugin: []string{"status", "agent", "-o", "json"}, kubectl: []string{"get", "nas", "agent", "-o", "json"}, notGoldens: true},
		{plugin: []string{"status", "agent", "-o", "yaml"}, kubectl: []string{"get", "nas", "agent", "-o", "yaml"}, notGoldens: true},
		// At its current revision the set's history entry is the set itself.
		{golden: "history-name.golden", plugin: []string{"rollout", "history", "agent", "--revision", "2", "-o", "name"},
			kubectl: []string{"get", "nas", "agent", "-o", "name"}},
		{golden: "history-jsonpath.golden", plugin: []string{"rollout", "history", "agent", "--revision", "2", "-o", "jsonpath={.metadata.name} {.spec.template.spec.containers[0].image}"},
			kubectl: []string{"get", "nas", "agent", "-o", "jsonpath={.metadata.name} {.spec.template.spec.containers[0].image}"}},
		{plugin: []string{"rollout", "history", "agent", "--revision", "2", "-o", "json"}, kubectl: []string{"get", "nas", "agent", "-o", "json"}, notGoldens: true},
		{plugin: []string{"rollout", "history", "agent", "--revision", "2", "-o", "yaml"}, kubectl: []string{"get", "nas", "agent", "-o", "yaml"}, notGoldens: true},
	} {
		t.Run(strings.Join(tc.plugin, " "), func(t *testing.T) {
			got := mustPlugin(t, c.Kubeconfig, append([]string{"-n", f.ns}, tc.plugin...)...)
			want := kubectl(t, c.Kubeconfig, nil, append([]string{"-n", f.ns}, tc.kubectl...)...)
			if got != want {
				t.Errorf("kubectl nodeagentset %s printed\n%s\nkubectl %s printed\n%s", strings.Join(tc.plugin, " "), got, strings.Join(tc.kubectl, " "), want)
			}
			if !tc.notGoldens {
				cluster.Golden(t, filepath.Join("testdata", tc.golden), got)
			}
		})
	}

	// An older revision: the set with that revision's template, one
	// object per revision without --revision (kubectl rollout history -o
	// prints a DaemonSet so).
	cluster.Golden(t, filepath.Join("testdata", "history-old-revision.golden"), mustPlugin(t, c.Kubeconfig, "-n", f.ns,
		"rollout", "history", "agent", "-o", `go-template={{.spec.template.spec.containers}}{{"\n"}}`))

	// Formats kubectl does not know are refused before anything is read.
	if _, _, err := plugin(t, c.Kubeconfig, nil, "-n", f.ns, "status", "agent", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "allowed formats are") {
		t.Errorf("status -o xml: %v", err)
	}
}
