package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// canaryScript is `make demo-canary`: a release whose agents crash-loop
// (kwok's pod-crash-loop stage, selected by a template annotation) is
// caught on a canary of one node per zone, shown with the plugin, and
// aborted with it; every node is back on the current revision.
func (d *demo) canaryScript(ctx context.Context) error {
	if _, err := os.Stat(d.pluginBinary); err != nil {
		return fmt.Errorf("kubectl plugin %s: %w (run `make demo-canary`, which builds it)", d.pluginBinary, err)
	}
	set := sampleSet()
	set.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromString("20%")),
		Canary: &nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(3)), SpreadBy: corev1.LabelTopologyZone, Soak: "10s"},
		Waves:  &nasv1alpha1.Waves{By: corev1.LabelTopologyZone},
		Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](2)}}
	step("Applying NodeAgentSet monitoring/node-agent (node-agent:1.0) with a canary of 3 nodes, one per zone, " +
		"a 10s soak, zone waves, and a health check (maxRestarts 2)")
	current, err := d.apply(ctx, set)
	if err != nil {
		return err
	}

	step("Rolling out node-agent:1.1-bad, whose agent crash-loops (annotation kwok.nodeagentset.io/crash-loop)")
	start := time.Now()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := d.get(ctx)
		got.Spec.Template.Spec.Containers[0].Image = "registry.example/node-agent:1.1-bad"
		got.Spec.Template.Annotations = map[string]string{"kwok.nodeagentset.io/crash-loop": "true"}
		return d.k.Update(ctx, got)
	})
	if err != nil {
		return err
	}
	set, err = d.waitRollout(ctx, "the health check to fail", func(s *nasv1alpha1.NodeAgentSet) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, nasv1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue
	})
	if err != nil {
		return err
	}
	f := set.Status.Rollout.Failure
	d.note("bad release caught on the canary", time.Since(start), fmt.Sprintf("%s on %s", f.Reason, f.Node))
	d.plugin("rollout", "status", "node-agent", "--watch=false")
	d.plugin("status", "node-agent")

	step("Aborting: kubectl nodeagentset rollout abort node-agent")
	start = time.Now()
	d.plugin("rollout", "abort", "node-agent")
	if _, err := d.waitRollout(ctx, "every node back on "+current, func(s *nasv1alpha1.NodeAgentSet) bool {
		return s.Status.Rollout.Phase == nasv1alpha1.PhaseAborted && d.allOn(ctx, s, current)
	}); err != nil {
		return err
	}
	d.note("abort: canary back on 1.0", time.Since(start), "every agent on "+current)
	d.kubectl("get", "pods", "-n", "monitoring", "--sort-by=.spec.nodeName", "-o",
		"custom-columns=NODE:.spec.nodeName,POD:.metadata.name,REVISION:.metadata.labels.controller-revision-hash,READY:.status.containerStatuses[0].ready,IMAGE:.spec.containers[0].image")
	d.kubectl("get", "nas", "-n", "monitoring", "node-agent", "-o",
		"jsonpath={.status.rollout.phase}: {.status.rollout.failure.reason} on {.status.rollout.failure.node} (canary {.status.rollout.canaryNodes})")
	return nil
}

// waitRollout prints the stage as it changes until done holds for the set.
func (d *demo) waitRollout(ctx context.Context, what string, done func(*nasv1alpha1.NodeAgentSet) bool) (*nasv1alpha1.NodeAgentSet, error) {
	deadline := time.Now().Add(2 * time.Minute)
	last := ""
	for {
		set := d.get(ctx)
		if r := set.Status.Rollout; r != nil && set.Status.ObservedGeneration == set.Generation {
			line := fmt.Sprintf("  phase %-12s canary %v  updated %d/%d  available %d/%d", r.Phase, r.CanaryNodes,
				set.Status.UpdatedNumberScheduled, set.Status.DesiredNumberScheduled, set.Status.NumberAvailable, set.Status.DesiredNumberScheduled)
			if line != last {
				fmt.Println(line)
				last = line
			}
			if done(set) {
				return set, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("waiting for %s: not within 2 minutes; see %s", what, d.c.LogPath("manager"))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// allOn reports whether every desired node runs exactly one agent, Ready
// and of revision rev.
func (d *demo) allOn(ctx context.Context, set *nasv1alpha1.NodeAgentSet, rev string) bool {
	var pods corev1.PodList
	if err := d.k.List(ctx, &pods, client.InNamespace(set.Namespace), client.MatchingLabels{"app": "node-agent"}); err != nil {
		return false
	}
	hash := strings.TrimPrefix(rev, set.Name+"-")
	ok := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Labels[nasv1alpha1.LabelRevisionHash] != hash {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ok++
			}
		}
	}
	return int32(ok) == set.Status.DesiredNumberScheduled
}

// plugin runs kubectl-nodeagentset in the demo's namespace and shows its
// output and, when not zero, its exit code.
func (d *demo) plugin(args ...string) {
	fmt.Printf("  $ kubectl nodeagentset %s\n", strings.Join(args, " "))
	cmd := exec.Command(d.pluginBinary, append([]string{"-n", "monitoring"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.c.Kubeconfig)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("    " + l)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		fmt.Printf("    (exit %d)\n", exit.ExitCode())
	} else if err != nil {
		fmt.Printf("    (%v)\n", err)
	}
}
