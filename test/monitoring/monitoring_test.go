package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtool runs promtool test rules on the alert tests with rules as the
// chart's rules file, and returns its output and error.
func promtool(t *testing.T, rules []byte) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatal("promtool is not on PATH: run the tests with `make test` (make tools builds it into bin/)")
	}
	dir := t.TempDir()
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"rules.yaml": rules, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("promtool", "test", "rules", filepath.Join(dir, "alerts_test.yaml")).CombinedOutput()
	return string(out), err
}

func render(t *testing.T) []byte {
	t.Helper()
	rules, err := RenderRules()
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// The alerts the chart ships fire when they should and not before, on
// series played by promtool.
func TestAlertRules(t *testing.T) {
	rules := render(t)
	if out, err := promtool(t, rules); err != nil {
		t.Fatalf("promtool test rules: %v\n%s\nrules:\n%s", err, out, rules)
	}
}

// Each alert is covered: an alert that never fires, or a rule that does
// not parse, fails promtool.
func TestBrokenAlertRulesFailPromtool(t *testing.T) {
	rules := render(t)
	exprs, err := RuleExprs(rules)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) != 5 {
		t.Fatalf("%d alerts, want 5", len(exprs))
	}
	broken := map[string][]byte{"does not parse": withExpr(t, rules, 0, "sum by (namespace")}
	for i := range exprs {
		broken[fmt.Sprintf("alert %d never fires", i+1)] = withExpr(t, rules, i, "vector(0) > 1")
	}
	for name, r := range broken {
		t.Run(name, func(t *testing.T) {
			if out, err := promtool(t, r); err == nil {
				t.Fatalf("promtool passed a broken rule file:\n%s\n%s", r, out)
			}
		})
	}
}

// withExpr is rules with the i-th rule's expression replaced.
func withExpr(t *testing.T, rules []byte, i int, expr string) []byte {
	t.Helper()
	var file map[string]any
	if err := yaml.Unmarshal(rules, &file); err != nil {
		t.Fatal(err)
	}
	group := file["groups"].([]any)[0].(map[string]any)
	group["rules"].([]any)[i].(map[string]any)["expr"] = expr
	out, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The parser that finds metric names in queries: label names, durations,
// strings and functions are not metrics.
func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.9, sum by (namespace, name, le) (rate(nodeagentset_rollout_duration_seconds_bucket{namespace=~"$namespace"}[$__rate_interval])))`:      {"nodeagentset_rollout_duration_seconds_bucket"},
		`(nodeagentset_updated_nodes < nodeagentset_desired_nodes) unless on (namespace, name) (nodeagentset_rollout_phase{phase=~"Paused|AwaitingPromotion"} == 1)`: {"nodeagentset_updated_nodes", "nodeagentset_desired_nodes", "nodeagentset_rollout_phase"},
		`label_values(nodeagentset_desired_nodes{namespace=~"$namespace"}, name)`:                                                                                    {"nodeagentset_desired_nodes"},
		`sum(rate(controller_runtime_reconcile_errors_total{controller="nodeagentset"}[5m]))`:                                                                        {"controller_runtime_reconcile_errors_total"},
	} {
		if got := MetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("MetricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// Missing catches a misspelt metric and a histogram suffix on a metric
// that is no histogram, and lets promised metrics be absent.
func TestMissingCatchesMisspeltMetrics(t *testing.T) {
	exposed := []string{"nodeagentset_desired_nodes", "nodeagentset_rollout_duration_seconds_bucket"}
	got := Missing([]string{
		`nodeagentset_desired_nodes - nodeagentset_availabel_nodes`,
		`rate(nodeagentset_rollout_duration_seconds_bucket[5m])`,
		`rate(nodeagentset_desired_nodes_bucket[5m])`,
		`nodeagentset_rollout_phase == 1`,
	}, exposed, []string{"nodeagentset_rollout_phase"})
	want := []string{"nodeagentset_availabel_nodes", "nodeagentset_desired_nodes_bucket"}
	if !slices.Equal(got, want) {
		t.Fatalf("Missing = %q, want %q", got, want)
	}
}
