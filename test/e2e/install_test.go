package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

const chart = "../../config/helm/nodeagentset"

// run runs a pinned binary with the cluster's admin kubeconfig and returns
// its standard output; stdin may be nil.
func run(t *testing.T, c *cluster.Cluster, stdin []byte, name string, args ...string) ([]byte, error) {
	t.Helper()
	path := filepath.Join("..", "..", "bin", name)
	if c != nil {
		path = c.BinPath(name)
	}
	cmd := exec.CommandContext(t.Context(), path, args...)
	if c != nil {
		cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func mustRun(t *testing.T, c *cluster.Cluster, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, err := run(t, c, stdin, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHelmChartLintsAndRefusesBadValues(t *testing.T) {
	mustRun(t, nil, nil, "helm", "lint", "--strict", chart)
	mustRun(t, nil, nil, "helm", "lint", "--strict", chart, "--set", "replicaCount=1,metrics.serviceMonitor.enabled=true,logLevel=5")
	bad := map[string]string{
		"replicaCount: two":                 "/replicaCount",
		"logLevel: chatty":                  "/logLevel",
		"kubeAPI:\n  qps: fast":             "/kubeAPI/qps",
		"metrics:\n  port: 99999":           "/metrics/port",
		"replicas: 3":                       "replicas",
		"image:\n  pullPolicy: Sometimes":   "/image/pullPolicy",
		"podDisruptionBudget:\n  on: true":  "on",
		"leaderElection:\n  enabled: \"y\"": "/leaderElection/enabled",
		// Two active managers would create duplicate agent pods.
		"replicaCount: 2\nleaderElection:\n  enabled: false":                  "/replicaCount",
		"leaderElection:\n  leaseDuration: 15":                                "/leaderElection/leaseDuration",
		"extraArgs: [leader-elect]":                                           "/extraArgs/0",
		"metrics:\n  serviceMonitor:\n    tls:\n      ca: {secret: {nam: x}}": "nam",
	}
	for values, want := range bad {
		file := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(file, []byte(values+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := run(t, nil, nil, "helm", "template", "x", chart, "-f", file)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("values %q: got %v, want a schema error naming %q", values, err, want)
		}
	}
}

// The template refuses what the schema cannot say, with a message saying
// why; the schema is skipped here so the template's own check is what runs.
func TestHelmChartTemplateRefusesUnsafeCombinations(t *testing.T) {
	bad := map[string][]string{
		"replicaCount is 3 with leaderElection.enabled=false": {"replicaCount=3,leaderElection.enabled=false"},
		"below gracefulShutdownTimeoutSeconds (30)":           {"terminationGracePeriodSeconds=20"},
		"needs a CA to verify the endpoint":                   {"metrics.serviceMonitor.enabled=true"},
		"but metrics.certSecret is not":                       {"metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.tls.ca.secret.name=ca"},
	}
	for want, set := range bad {
		_, err := run(t, nil, nil, "helm", "template", "x", chart, "--skip-schema-validation", "--set", set[0])
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: got %v, want an error saying %q", set[0], err, want)
		}
	}
	// One replica without leader election is fine.
	mustRun(t, nil, nil, "helm", "template", "x", chart, "--set", "replicaCount=1,leaderElection.enabled=false")
}

// knobValues sets every operator knob of the chart at once.
const knobValues = `global: {imageRegistry: registry.example}
nameOverride: agents
image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
imagePullSecrets: [{name: regcred}]
leaderElection: {leaseDuration: 30s, renewDeadline: 20s, retryPeriod: 5s}
gracefulShutdownTimeoutSeconds: 60
extraArgs: [--zap-encoder=json]
env: [{name: GOMEMLIMIT, value: 200MiB}]
podSecurityContext: {runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
priorityClassName: system-cluster-critical
podAnnotations: {example.com/note: knobs}
podLabels: {team: platform}
topologySpreadConstraints:
- {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: agents}}}
metrics:
  certSecret: metrics-tls
  serviceMonitor: {enabled: true, tls: {ca: {configMap: {name: metrics-ca}}}}
`

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestHelmChartRendersTheKnobs renders the chart with every operator knob
// set and reads the objects back; the manager's own flag parser must take
// the rendered arguments.
func TestHelmChartRendersTheKnobs(t *testing.T) {
	out := mustRun(t, nil, nil, "helm", "template", "rel", chart, "-n", "ops", "-f", writeTemp(t, "values.yaml", knobValues))
	var d *appsv1.Deployment
	var sm *unstructured.Unstructured
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Deployment":
			d = &appsv1.Deployment{}
			err := yaml.UnmarshalStrict([]byte(doc), d)
			if err != nil {
				t.Fatal(err)
			}
		case "ServiceMonitor":
			sm = &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &sm.Object); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d == nil || sm == nil {
		t.Fatalf("want a Deployment and a ServiceMonitor in:\n%s", out)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	args := strings.Join(c.Args, " ")
	checks := map[string]bool{
		"name from nameOverride":           d.Name == "rel-agents",
		"image by digest":                  c.Image == "ghcr.io/nodeagentset/manager@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"pull secret":                      len(pod.ImagePullSecrets) == 1 && pod.ImagePullSecrets[0].Name == "regcred",
		"lease timings":                    strings.Contains(args, "--leader-election-lease-duration=30s --leader-election-renew-deadline=20s --leader-election-retry-period=5s"),
		"shutdown timeout":                 strings.Contains(args, "--graceful-shutdown-timeout=60s"),
		"grace above the shutdown timeout": pod.TerminationGracePeriodSeconds != nil && *pod.TerminationGracePeriodSeconds == 70,
		"extra args last":                  c.Args[len(c.Args)-1] == "--zap-encoder=json",
		"env":                              len(c.Env) == 1 && c.Env[0].Name == "GOMEMLIMIT",
		"pod security context":             pod.SecurityContext != nil && pod.SecurityContext.FSGroup != nil && *pod.SecurityContext.FSGroup == 65532,
		"container security context":       c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem,
		"priority class":                   pod.PriorityClassName == "system-cluster-critical",
		"pod labels and annotations":       d.Spec.Template.Labels["team"] == "platform" && d.Spec.Template.Annotations["example.com/note"] == "knobs",
		"host spread and the extra one":    len(pod.TopologySpreadConstraints) == 2 && pod.TopologySpreadConstraints[0].TopologyKey == "kubernetes.io/hostname",
		"serving cert mounted":             strings.Contains(args, "--metrics-cert-dir=/var/run/metrics-cert") && len(pod.Volumes) == 1 && pod.Volumes[0].Secret.SecretName == "metrics-tls",
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) == 1 {
		cfg, _, _ := unstructured.NestedMap(endpoints[0].(map[string]any), "tlsConfig")
		ca, _, _ := unstructured.NestedStringMap(cfg, "ca", "configMap")
		checks["ServiceMonitor CA from the ConfigMap"] = ca["name"] == "metrics-ca" && ca["key"] == "ca.crt"
		checks["ServiceMonitor serverName is the Service's"] = cfg["serverName"] == "rel-agents-metrics.ops.svc"
		_, skip := cfg["insecureSkipVerify"]
		checks["ServiceMonitor verifies"] = !skip
	} else {
		checks["one ServiceMonitor endpoint"] = false
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("%s: not as set", what)
		}
	}
	// The flags exist and parse: the manager stops at --help, after them.
	if out, err := exec.CommandContext(t.Context(), managerBinary, append(c.Args, "--help")...).CombinedOutput(); err != nil {
		t.Errorf("the manager refuses the rendered arguments: %v\n%s", err, out)
	}
	if t.Failed() {
		t.Logf("rendered:\n%s", out)
	}
}

// TestHelmChartWorksAsSubchart: a parent chart passes global values, which
// Helm hands to every subchart, and sets the subchart's own.
func TestHelmChartWorksAsSubchart(t *testing.T) {
	parent := t.TempDir()
	if err := os.CopyFS(filepath.Join(parent, "charts", "nodeagentset"), os.DirFS(chart)); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"Chart.yaml":  "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n- {name: nodeagentset, version: 0.1.0}\n",
		"values.yaml": "global: {imageRegistry: registry.example, clusterName: prod}\nnodeagentset:\n  replicaCount: 1\n  leaderElection: {enabled: false}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(parent, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, nil, nil, "helm", "lint", "--strict", parent)
	out := string(mustRun(t, nil, nil, "helm", "template", "platform", parent))
	if !strings.Contains(out, "name: platform-nodeagentset") || !strings.Contains(out, "replicas: 1") {
		t.Errorf("the subchart's Deployment is missing or has the wrong replicas:\n%s", out)
	}
}

// TestRenderedManifestsAreAccepted renders the chart (default and
// non-default values) and the kustomize trees, and has the local API server
// accept every object by a server-side dry run.
func TestRenderedManifestsAreAccepted(t *testing.T) {
	c := startCluster(t, cluster.Options{NoScheduler: true})
	for _, ns := range []string{"nas-system", "nas-custom", "nodeagentset-system", "monitoring", "logging"} {
		mustRun(t, c, nil, "kubectl", "create", "namespace", ns)
	}
	// The optional ServiceMonitor needs the Prometheus Operator's CRD.
	mustRun(t, c, []byte(serviceMonitorCRD), "kubectl", "apply", "-f", "-")
	mustRun(t, c, nil, "kubectl", "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")

	renders := map[string][]byte{
		"chart, default values": mustRun(t, nil, nil, "helm", "template", "nas", chart, "-n", "nas-system", "--include-crds"),
		"chart, other values": mustRun(t, nil, nil, "helm", "template", "custom", chart, "-n", "nas-custom",
			"--set", "replicaCount=3,leaderElection.enabled=true,metrics.secure=false,metrics.serviceMonitor.enabled=true,logLevel=debug,maxConcurrentReconciles=8,kubeAPI.qps=50,kubeAPI.burst=80,priorityClassName=system-cluster-critical,serviceAccount.name=agent-controller,podDisruptionBudget.minAvailable=2",
			"--set-json", `nodeSelector={"kubernetes.io/os":"linux"}`,
			"--set-json", `tolerations=[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}]`),
		"chart, every knob":        mustRun(t, nil, nil, "helm", "template", "rel", chart, "-n", "nas-custom", "-f", writeTemp(t, "values.yaml", knobValues)),
		"kustomize config/default": mustRun(t, c, nil, "kubectl", "kustomize", "../../config/default"),
		"kustomize config/samples": mustRun(t, c, nil, "kubectl", "kustomize", "../../config/samples"),
	}
	for name, manifests := range renders {
		out, err := run(t, c, manifests, "kubectl", "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", "-")
		if err != nil {
			t.Errorf("%s: not accepted: %v", name, err)
			continue
		}
		t.Logf("%s: %d objects accepted", name, strings.Count(string(out), "serverside-applied"))
	}
}

// TestManagerRunsWithTheChartsRBAC installs the chart's objects, runs the
// manager with a token of the chart's ServiceAccount (not as admin), and
// requires it to reconcile a sample to convergence with no permission
// error in its log, while the same identity is refused Secrets.
func TestManagerRunsWithTheChartsRBAC(t *testing.T) {
	ctx := t.Context()
	c := startCluster(t, cluster.Options{})
	nodes := cluster.Nodes("node", 5)
	if err := c.AddNodes(ctx, nodes...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(ctx, time.Minute, cluster.Names(nodes)...); err != nil {
		t.Fatal(err)
	}
	mustRun(t, c, nil, "kubectl", "create", "namespace", "nas-system")
	mustRun(t, c, mustRun(t, nil, nil, "helm", "template", "nas", chart, "-n", "nas-system"), "kubectl", "apply", "-f", "-")
	token := strings.TrimSpace(string(mustRun(t, c, nil, "kubectl", "create", "token", "nas-nodeagentset", "-n", "nas-system", "--duration=1h")))
	kubeconfig := tokenKubeconfig(t, c.Config, token)

	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	err = c.StartProcess("manager", managerBinary, "--kubeconfig="+kubeconfig, "--leader-elect",
		"--leader-election-namespace=nas-system", fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port),
		"--health-probe-bind-address=0")
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	sample := loadSample(t, "../../config/samples/node-exporter.yaml")
	if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sample.Namespace}}); err != nil {
		t.Fatal(err)
	}
	sample.Spec.MinReadySeconds = 0
	if err := k.Create(ctx, sample.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	eligible := map[string]bool{}
	for _, n := range cluster.Names(nodes) {
		eligible[n] = true
	}
	if err := waitConverged(ctx, k, sample, eligible); err != nil {
		t.Fatal(err)
	}
	// Adopting the revisions a --cascade=orphan deletion left takes a
	// patch and an uncached list of the set, which the role must grant.
	e := &orphanEnv{c: c, k: k, nodes: cluster.Names(nodes), set: sample}
	e.snapshot(t)
	e.orphanThenRecreate(t)

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.CoreV1().Secrets("nas-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the chart's ServiceAccount listing Secrets: got %v, want Forbidden", err)
	}
	logs, err := os.ReadFile(c.LogPath("manager"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(string(logs)), "forbidden") {
		t.Errorf("the manager hit a permission error with the chart's RBAC:\n%s", grep(string(logs), "orbidden"))
	}
}

func tokenKubeconfig(t *testing.T, admin *rest.Config, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: admin.CAData}
	cfg.AuthInfos["chart-sa"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["chart-sa"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "chart-sa"}
	cfg.CurrentContext = "chart-sa"
	path := filepath.Join(t.TempDir(), "chart-sa.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadSample(t *testing.T, path string) *nasv1alpha1.NodeAgentSet {
	t.Helper()
	set := &nasv1alpha1.NodeAgentSet{}
	loadYAML(t, path, set, yaml.UnmarshalStrict)
	return set
}

func loadYAML(t *testing.T, path string, into any, unmarshal func([]byte, any, ...yaml.JSONOpt) error) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func grep(text, word string) string {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

const serviceMonitorCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`
