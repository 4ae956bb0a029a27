package plugin

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// A surging DaemonSet never takes an available agent down first; the
// converted set must say maxUnavailable 0 rather than inherit our
// default of 1.
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
	out, err := Convert([]byte(ds))
	if err != nil {
		t.Fatal(err)
	}
	var set nasv1alpha1.NodeAgentSet
	if err := yaml.UnmarshalStrict(out, &set); err != nil {
		t.Fatal(err)
	}
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" || ru.MaxSurge.String() != "1" {
		t.Fatalf("rollingUpdate = %+v, want maxSurge 1 and maxUnavailable 0:\n%s", ru, out)
	}
	if !strings.Contains(string(out), "maxUnavailable: 0") {
		t.Fatalf("output does not say maxUnavailable 0:\n%s", out)
	}
}
