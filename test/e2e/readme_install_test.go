package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// The README's install commands are read from README.md itself, so the
// file and the test cannot drift: a block marked `<!-- test: NAME -->` is
// run line by line, verbatim, from the repository's root.
const (
	repoRoot      = "../.."
	installNS     = "nodeagentset-system"
	crdName       = "nodeagentsets.nodeagentset.io"
	lastAppliedAn = "kubectl.kubernetes.io/last-applied-configuration"
)

// readmeCommands returns the commands of the ```sh block that follows the
// marker `<!-- test: name -->` in README.md: comments and blank lines
// dropped, backslash continuations joined.
func readmeCommands(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := markedCommands(b, name)
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

func markedCommands(readme []byte, name string) ([]string, error) {
	marker := "<!-- test: " + name + " -->"
	_, after, ok := bytes.Cut(readme, []byte(marker))
	if !ok {
		return nil, fmt.Errorf("README.md has no %q", marker)
	}
	s := bufio.NewScanner(bytes.NewReader(after))
	var cmds []string
	var cur string
	inBlock := false
	for s.Scan() {
		line := s.Text()
		switch {
		case !inBlock && strings.TrimSpace(line) == "":
		case !inBlock && strings.HasPrefix(line, "```sh"):
			inBlock = true
		case !inBlock:
			return nil, fmt.Errorf("%s: text before the ```sh block: %q", marker, line)
		case strings.HasPrefix(line, "```"):
			if len(cmds) == 0 {
				return nil, fmt.Errorf("%s: empty block", marker)
			}
			return cmds, nil
		case strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "":
		default:
			cur += strings.TrimSuffix(line, "\\")
			if !strings.HasSuffix(line, "\\") {
				cmds = append(cmds, strings.TrimSpace(cur))
				cur = ""
			}
		}
	}
	return nil, fmt.Errorf("%s: unterminated block", marker)
}

func TestMarkedCommandsReadsTheBlock(t *testing.T) {
	readme := []byte("text\n<!-- test: x -->\n\n```sh\n# comment\nhelm install a \\\n  b\n\nkubectl apply -k c\n```\n```sh\nnot this\n```\n")
	got, err := markedCommands(readme, "x")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"helm install a   b", "kubectl apply -k c"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := markedCommands(readme, "y"); err == nil {
		t.Error("a missing marker: no error")
	}
}

// runREADME runs the marked block's commands with the cluster's admin
// kubeconfig and bin/ first on PATH (kubectl and helm as pinned), each
// through sh -c exactly as written.
func runREADME(t *testing.T, c *cluster.Cluster, name string) {
	t.Helper()
	helmHome := t.TempDir()
	for _, line := range readmeCommands(t, name) {
		cmd := exec.CommandContext(t.Context(), "sh", "-c", line)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(),
			"PATH="+filepath.Dir(c.BinPath("kubectl"))+string(os.PathListSeparator)+os.Getenv("PATH"),
			"KUBECONFIG="+c.Kubeconfig,
			// Helm's caches and config stay out of the user's home.
			"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
			"HELM_DATA_HOME="+filepath.Join(helmHome, "data"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("README %s: %s: %v\n%s", name, line, err, out)
		}
		t.Logf("README %s: %s\n%s", name, line, bytes.TrimSpace(out))
	}
}

// TestREADMEInstallHelm runs the README's Helm install, checks the
// controller's replicas land on distinct nodes, runs the manager with the
// installed Deployment's arguments as its ServiceAccount until a sample
// converges, then runs the README's upgrade over a CRD that Helm wrote
// differently (as an older chart's would be).
func TestREADMEInstallHelm(t *testing.T) {
	c, k := installCluster(t)
	runREADME(t, c, "install-helm")
	deploy := waitDeploymentAvailable(t, k, installNS, "nodeagentset")
	requireSpread(t, k, deploy)
	runInstalledManager(t, c, k, deploy)

	// Helm created the CRD; an older chart's would differ. Make a field
	// differ under Helm's name: the README's upgrade must still replace it.
	mustRun(t, c, nil, "kubectl", "patch", "crd", crdName, "--field-manager=helm", "--type=json",
		"-p", `[{"op":"replace","path":"/spec/versions/0/schema/openAPIV3Schema/description","value":"from an older chart"}]`)
	runREADME(t, c, "upgrade-helm")
	want := loadCRD(t, filepath.Join(chart, "crds", "nodeagentset.io_nodeagentsets.yaml"))
	got := &apiextensionsv1.CustomResourceDefinition{}
	if err := k.Get(t.Context(), client.ObjectKey{Name: crdName}, got); err != nil {
		t.Fatal(err)
	}
	if g, w := got.Spec.Versions[0].Schema.OpenAPIV3Schema.Description, want.Spec.Versions[0].Schema.OpenAPIV3Schema.Description; g != w {
		t.Errorf("after the README's CRD upgrade the description is %q, want the chart's %q", g, w)
	}
	waitDeploymentAvailable(t, k, installNS, "nodeagentset")
}

// TestREADMEInstallKustomize runs the README's `kubectl apply -k` twice
// (install, then the same command as an upgrade): client-side apply must
// fit the CRD in its last-applied annotation.
func TestREADMEInstallKustomize(t *testing.T) {
	c, k := installCluster(t)
	runREADME(t, c, "install-kustomize")
	runREADME(t, c, "install-kustomize")
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := k.Get(t.Context(), client.ObjectKey{Name: crdName}, crd); err != nil {
		t.Fatal(err)
	}
	t.Logf("CRD last-applied annotation: %d bytes (limit 262144 for all annotations)", len(crd.Annotations[lastAppliedAn]))
	if crd.Annotations[lastAppliedAn] == "" {
		t.Errorf("the CRD has no %s annotation: was it applied client-side?", lastAppliedAn)
	}
	deploy := waitDeploymentAvailable(t, k, installNS, "nodeagentset-controller-manager")
	requireSpread(t, k, deploy)
	runInstalledManager(t, c, k, deploy)
}

// installCluster is a cluster with three fake nodes and no CRD: the
// install under test brings it.
func installCluster(t *testing.T) (*cluster.Cluster, client.Client) {
	t.Helper()
	// The Deployment and ReplicaSet controllers run the installed
	// controller's pods (on kwok nodes, so no image is pulled).
	controllers := append([]string{"deployment-controller", "replicaset-controller"}, cluster.DefaultControllers...)
	c := cluster.StartForTest(t, cluster.Options{Controllers: controllers})
	nodes := cluster.Nodes("node", 3)
	if err := c.AddNodes(t.Context(), nodes...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(t.Context(), time.Minute, cluster.Names(nodes)...); err != nil {
		t.Fatal(err)
	}
	k, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// waitDeploymentAvailable waits for every replica to be available (kwok
// runs the pods: no image is pulled).
func waitDeploymentAvailable(t *testing.T, k client.Client, ns, name string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			last = err.Error()
			return false, nil
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		last = fmt.Sprintf("%d of %d replicas available, generation %d observed %d", d.Status.AvailableReplicas, want, d.Generation, d.Status.ObservedGeneration)
		return d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas == want, nil
	})
	if err != nil {
		t.Fatalf("deployment %s/%s: %v (%s)", ns, name, err, last)
	}
	return d
}

// requireSpread: the replicas run on distinct nodes (three nodes, two
// replicas: the soft spread has room).
func requireSpread(t *testing.T, k client.Client, d *appsv1.Deployment) {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k.List(t.Context(), pods, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for _, p := range pods.Items {
		nodes[p.Spec.NodeName] = true
	}
	if len(pods.Items) < 2 || len(nodes) != len(pods.Items) {
		t.Errorf("%d controller pods on %d nodes, want at least 2 on as many nodes", len(pods.Items), len(nodes))
	}
}

// runInstalledManager runs the manager as the pod would: the installed
// container's arguments, as its ServiceAccount. Only what differs out of
// a cluster is appended (Go flags: the last one wins): the kubeconfig,
// free ports, and the lease namespace a pod reads from its ServiceAccount.
// A sample must converge with no permission error in the log.
func runInstalledManager(t *testing.T, c *cluster.Cluster, k client.Client, d *appsv1.Deployment) {
	t.Helper()
	ctx := t.Context()
	spec := d.Spec.Template.Spec
	token := strings.TrimSpace(string(mustRun(t, c, nil, "kubectl", "create", "token", spec.ServiceAccountName, "-n", d.Namespace, "--duration=1h")))
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), spec.Containers[0].Args...),
		"--kubeconfig="+tokenKubeconfig(t, c.Config, token),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port),
		"--health-probe-bind-address=0",
		"--leader-election-namespace="+d.Namespace)
	if err := c.StartProcess("manager", managerBinary, args...); err != nil {
		t.Fatal(err)
	}
	sample := loadSample(t, filepath.Join(repoRoot, "config", "samples", "node-exporter.yaml"))
	sample.Spec.MinReadySeconds = 0
	if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sample.Namespace}}); err != nil {
		t.Fatal(err)
	}
	if err := k.Create(ctx, sample.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	nodes := &corev1.NodeList{}
	if err := k.List(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	eligible := map[string]bool{}
	for _, n := range nodes.Items {
		eligible[n.Name] = true
	}
	if err := waitConverged(ctx, k, sample, eligible); err != nil {
		t.Fatal(err)
	}
	logs, err := os.ReadFile(c.LogPath("manager"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(string(logs)), "forbidden") {
		t.Errorf("the installed manager hit a permission error:\n%s", grep(string(logs), "orbidden"))
	}
}

func loadCRD(t *testing.T, path string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	loadYAML(t, path, crd, yaml.Unmarshal)
	return crd
}
