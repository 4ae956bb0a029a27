package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// plugin runs kubectl-nodeagentset against c and returns its output and
// exit code (stdout is not a terminal: the plain-line output).
func plugin(t *testing.T, c *cluster.Cluster, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), pluginBinary, append([]string{"--kubeconfig", c.Kubeconfig, "-n", "plugin"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if os.Getenv("NAS_SHOW_PLUGIN_OUTPUT") != "" { // for the README's examples
		t.Logf("$ kubectl nodeagentset %s\n%s(exit %v)", strings.Join(args, " "), out.String(), err)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatal(err)
	return "", -1
}

func mustPlugin(t *testing.T, c *cluster.Cluster, want string, args ...string) string {
	t.Helper()
	out, code := plugin(t, c, args...)
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("kubectl nodeagentset %s: exit %d, output:\n%s\nwant exit 0 and %q", strings.Join(args, " "), code, out, want)
	}
	return out
}

// TestKubectlPlugin runs every command of the plugin against a real cluster
// with the manager, on 6 nodes: one tainted NoSchedule, one without the
// label the set selects, and a partition of 2.
func TestKubectlPlugin(t *testing.T) {
	ctx := t.Context()
	c := startCluster(t, cluster.Options{})
	specs := cluster.Nodes("node", 6)
	for i := range specs {
		specs[i].Labels = map[string]string{"agent": "yes"}
	}
	specs[1].Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	specs[2].Labels = nil
	if err := c.AddNodes(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(ctx, time.Minute, cluster.Names(specs)...); err != nil {
		t.Fatal(err)
	}
	env := &rolloutEnv{c: c, k: startManager(t, c), nodes: []string{"node-0000", "node-0003", "node-0004", "node-0005"}}
	set := env.deploy(t, "plugin", func(s *nasv1alpha1.NodeAgentSet) {
		s.Annotations = map[string]string{"kubernetes.io/change-cause": "first release"}
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{Partition: ptr.To(intstr.FromInt32(2))}
	})

	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{{"--help"}, {"rollout", "--help"}, {"rollout", "status", "--help"},
			{"rollout", "history", "--help"}, {"rollout", "undo", "--help"}, {"rollout", "pause", "--help"},
			{"rollout", "resume", "--help"}, {"rollout", "restart", "--help"}, {"status", "--help"}, {"convert", "--help"}} {
			out := mustPlugin(t, c, "Usage:", args...)
			if !strings.Contains(out, "--kubeconfig") && !strings.Contains(out, "Available Commands") {
				t.Errorf("%v: help lacks the kubectl flags:\n%s", args, out)
			}
		}
	})
	mustPlugin(t, c, "nodeagentset.nodeagentset.io/agent successfully rolled out (4 nodes)", "rollout", "status", "agent")

	env.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Annotations["kubernetes.io/change-cause"] = "agent 2"
		s.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:2"
	})
	out := mustPlugin(t, c, "successfully rolled out", "rollout", "status", "agent", "--timeout", "60s")
	if !strings.Contains(out, "Waiting for") && !strings.Contains(out, "successfully") {
		t.Errorf("rollout status printed:\n%s", out)
	}

	t.Run("status is golden", func(t *testing.T) {
		cluster.Golden(t, "testdata/status.golden", mustPlugin(t, c, "NODE", "status", "agent"))
		out := mustPlugin(t, c, "node-0002", "status", "agent", "--node", "node-0002")
		if !strings.Contains(out, "nodeSelector agent=yes does not match (node has no label agent)") || strings.Contains(out, "node-0001") {
			t.Errorf("status --node node-0002:\n%s", out)
		}
		// The agent's resources on the node (nodeOverrides applied).
		mustPlugin(t, c, "CONTAINER   REQUESTS", "status", "agent", "--node", "node-0000")
		if _, code := plugin(t, c, "status", "agent", "--node", "nope"); code == 0 {
			t.Error("status --node of an unknown node exited 0")
		}
		// -o prints the set itself, as kubectl get does.
		mustPlugin(t, c, "nodeagentset.nodeagentset.io/agent", "status", "agent", "-o", "name")
		mustPlugin(t, c, "kind: NodeAgentSet", "status", "agent", "-o", "yaml")
		if out := mustPlugin(t, c, "node-0002", "status", "agent", "-o", "wide", "-l", "!agent"); strings.Contains(out, "node-0000") {
			t.Errorf("status -l '!agent' shows a node labelled agent:\n%s", out)
		}
		if _, code := plugin(t, c, "status", "agent", "-o", "xml"); code == 0 {
			t.Error("status -o xml exited 0")
		}
	})

	t.Run("history", func(t *testing.T) {
		out := mustPlugin(t, c, "REVISION  CHANGE-CAUSE", "rollout", "history", "agent")
		if !strings.Contains(out, "1         first release") || !strings.Contains(out, "2         agent 2") {
			t.Errorf("history:\n%s", out)
		}
		mustPlugin(t, c, "image: registry.example/agent:2", "rollout", "history", "agent", "--revision", "2")
		mustPlugin(t, c, "image: registry.example/agent:1", "rollout", "history", "agent", "-o", "yaml")
		diff := mustPlugin(t, c, "--- revision #1", "rollout", "history", "agent", "--revision", "2", "--diff-with", "1")
		if !strings.Contains(diff, "- ") || !strings.Contains(diff, "+ ") || !strings.Contains(diff, "registry.example/agent:2") {
			t.Errorf("diff:\n%s", diff)
		}
		if _, code := plugin(t, c, "rollout", "history", "agent", "--revision", "9"); code == 0 {
			t.Error("history of a missing revision exited 0")
		}
	})

	t.Run("pause, timeout, resume", func(t *testing.T) {
		mustPlugin(t, c, "paused", "rollout", "pause", "agent")
		env.update(t, set, image("registry.example/agent:3"))
		out, code := plugin(t, c, "rollout", "status", "agent", "--timeout", "3s")
		if code == 0 || !strings.Contains(out, "timed out") || !strings.Contains(out, "paused") {
			t.Errorf("rollout status of a paused rollout: exit %d\n%s", code, out)
		}
		mustPlugin(t, c, "resumed", "rollout", "resume", "agent")
		mustPlugin(t, c, "successfully rolled out", "rollout", "status", "agent", "--timeout", "60s")
	})

	t.Run("undo and restart", func(t *testing.T) {
		mustPlugin(t, c, "rolled back to revision 1", "rollout", "undo", "agent", "--to-revision", "1")
		mustPlugin(t, c, "successfully rolled out", "rollout", "status", "agent", "--timeout", "60s")
		if img := env.get(t, set).Spec.Template.Spec.Containers[0].Image; img != "registry.example/agent:1" {
			t.Errorf("after undo the image is %s", img)
		}
		mustPlugin(t, c, "restarted", "rollout", "restart", "agent")
		if env.get(t, set).Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
			t.Error("restart left no restartedAt annotation")
		}
		mustPlugin(t, c, "successfully rolled out", "rollout", "status", "agent", "--timeout", "60s")
	})

	t.Run("progress deadline fails rollout status", func(t *testing.T) {
		env.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.ProgressDeadlineSeconds = ptr.To[int32](3)
			s.Spec.UpdateStrategy.RollingUpdate.Partition = nil
			s.Spec.Template.Annotations = map[string]string{"kwok.nodeagentset.io/ready": "false"}
		})
		out, code := plugin(t, c, "rollout", "status", "agent", "--timeout", "60s")
		if code == 0 || !strings.Contains(out, "ProgressDeadlineExceeded") {
			t.Errorf("rollout status of a stalled rollout: exit %d\n%s", code, out)
		}
	})

	t.Run("convert", func(t *testing.T) {
		out := mustPlugin(t, c, "kind: NodeAgentSet", "convert", "-f", "testdata/daemonset.yaml")
		converted := &nasv1alpha1.NodeAgentSet{}
		if err := yaml.UnmarshalStrict([]byte(out), converted); err != nil {
			t.Fatalf("convert output is not a NodeAgentSet: %v\n%s", err, out)
		}
		ru := converted.Spec.UpdateStrategy.RollingUpdate
		if converted.Spec.MinReadySeconds != 5 || ru == nil || ru.MaxUnavailable.String() != "10%" ||
			converted.Annotations["team"] != "logging" || converted.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "" {
			t.Errorf("converted:\n%s", out)
		}
		mustRun(t, c, []byte(out), "kubectl", "apply", "--dry-run=server", "-f", "-")
		if _, code := plugin(t, c, "convert", "-f", "testdata/status.golden"); code == 0 {
			t.Error("convert of something that is not a DaemonSet exited 0")
		}
	})
}
