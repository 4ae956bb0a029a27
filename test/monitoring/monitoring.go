// Package monitoring checks what the Helm chart ships for monitoring: the
// PrometheusRule's alerts (with promtool) and the Grafana dashboard's
// queries (every metric they name must be one the manager exports; the
// scrape side of that check is internal/controller's
// TestDashboardAndAlertsNameExportedMetrics).
package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Promised are metrics the alerts and the dashboard name before the
// manager exports them: fixed names owned by other issues (14: unhealthy
// nodes; 15: rollout phase and health check failures). They may be absent
// from a scrape; nothing else may. Remove a name once its metric ships.
var Promised []string

// Chart is the chart's folder.
func Chart() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "config", "helm", "nodeagentset")
}

// RenderRules renders the chart's PrometheusRule (enabled, other values
// as given) and returns its spec: a Prometheus rules file.
func RenderRules(set ...string) ([]byte, error) {
	args := []string{"template", "nas", Chart(), "--show-only", "templates/prometheusrule.yaml",
		"--set", "prometheusRule.enabled=true"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := exec.Command("helm", args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	var rule struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(out, &rule); err != nil {
		return nil, fmt.Errorf("rendered PrometheusRule: %w", err)
	}
	return yaml.JSONToYAML(rule.Spec)
}

// RuleExprs are the expressions of a rules file.
func RuleExprs(rules []byte) ([]string, error) {
	var file struct {
		Groups []struct {
			Rules []struct {
				Expr string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(rules, &file); err != nil {
		return nil, err
	}
	var exprs []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs, nil
}

// DashboardExprs are the queries of the dashboard: every panel target's
// expr and every templating query.
func DashboardExprs() ([]string, error) {
	raw, err := os.ReadFile(filepath.Join(Chart(), "files", "dashboard.json"))
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("dashboard.json: %w", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			exprs = append(exprs, t.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	return exprs, nil
}

// PromQL words that are not metric names: functions, aggregations,
// operators, modifiers, and Grafana's label_values.
var notMetrics = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile count_values group
		by without on ignoring group_left group_right and or unless bool offset
		rate irate increase delta idelta deriv changes resets abs ceil floor round clamp clamp_min clamp_max
		histogram_quantile histogram_count histogram_sum label_replace label_join vector scalar time timestamp
		absent absent_over_time sum_over_time avg_over_time max_over_time min_over_time count_over_time last_over_time
		predict_linear sort sort_desc inf nan label_values`) {
		notMetrics[w] = true
	}
}

var (
	// Label matchers, grouping clauses and range selectors name labels
	// and durations, not metrics; strings hold anything.
	braces   = regexp.MustCompile(`\{[^}]*\}`)
	grouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	ranges   = regexp.MustCompile(`\[[^\]]*\]`)
	strs     = regexp.MustCompile(`"[^"]*"`)
	ident    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	// label_values(metric, label): the second argument is a label.
	labelArg = regexp.MustCompile(`label_values\(([^,()]*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)`)
)

// MetricNames are the metric names expr reads. A misspelt function comes
// out as a metric name, which a check against a scrape then rejects too.
func MetricNames(expr string) []string {
	s := strs.ReplaceAllString(expr, " ")
	s = braces.ReplaceAllString(s, " ")
	s = grouping.ReplaceAllString(s, " ")
	s = ranges.ReplaceAllString(s, " ")
	s = labelArg.ReplaceAllString(s, "label_values($1)")
	var names []string
	for _, w := range ident.FindAllString(s, -1) {
		if !notMetrics[w] && !slices.Contains(names, w) {
			names = append(names, w)
		}
	}
	return names
}

// Missing lists the metric names exprs read that are not among the
// series names a scrape exposed (a histogram's as name_bucket, name_sum,
// name_count) nor in allowed.
func Missing(exprs []string, exposed, allowed []string) []string {
	var missing []string
	for _, e := range exprs {
		for _, n := range MetricNames(e) {
			if !slices.Contains(exposed, n) && !slices.Contains(allowed, n) && !slices.Contains(missing, n) {
				missing = append(missing, n)
			}
		}
	}
	return missing
}
