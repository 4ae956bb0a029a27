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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
