// Command demo is `make demo`: a local simulated cluster, the manager, and
// a NodeAgentSet fanning out, rolling out and rolling back, with live
// progress and a closing summary. The cluster stays up until Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/eligibility"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

type demo struct {
	c       *cluster.Cluster
	k       client.Client
	set     *nasv1alpha1.NodeAgentSet
	tty     bool
	summary [][3]string
	// pluginBinary is kubectl-nodeagentset, for the canary demo.
	pluginBinary string
}

func main() {
	manager := flag.String("manager", "bin/manager", "manager binary to run")
	dir := flag.String("dir", "_output/demo", "folder for the cluster's logs and kubeconfigs")
	plugin := flag.String("plugin", "bin/kubectl-nodeagentset", "kubectl plugin binary (for --canary)")
	canary := flag.Bool("canary", false, "show a bad release caught by the canary and aborted, instead of rollout and rollback")
	flag.Parse()
	d := &demo{tty: isTerminal(), pluginBinary: *plugin}
	script := d.script
	if *canary {
		script = d.canaryScript
	}
	if err := run(d, script, *manager, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(d *demo, script func(context.Context) error, manager, dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_ = os.RemoveAll(dir)
	step("Starting a local cluster: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok")
	begin := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{OwnSignals: true, Dir: dir, CRDDirs: []string{"config/crd/bases"}})
	if err != nil {
		return err
	}
	d.c = c
	if err := d.addNodes(ctx); err != nil {
		return errors.Join(err, c.Stop())
	}
	d.note("cluster with 20 fake nodes", time.Since(begin), "3 zones; 2 tainted, 1 cordoned, 1 Windows")
	if err := d.startManager(manager); err != nil {
		return errors.Join(err, c.Stop())
	}
	if err := script(ctx); err != nil {
		return errors.Join(err, c.Stop())
	}
	d.printSummary()
	fmt.Printf(`
The cluster keeps running. Explore it:

  export KUBECONFIG=%s
  kubectl get nas -n monitoring -o wide
  kubectl get pods -n monitoring -o wide
  kubectl describe nas node-agent -n monitoring

Logs of every component: %s/logs
Press Ctrl-C to stop everything.
`, c.Kubeconfig, c.Dir)
	<-ctx.Done()
	fmt.Println("\nStopping the cluster...")
	if err := c.Stop(); err != nil {
		return err
	}
	fmt.Println("Stopped.")
	return nil
}

func (d *demo) addNodes(ctx context.Context) error {
	specs := cluster.Nodes("node", 20)
	zones := []string{"zone-a", "zone-b", "zone-c"}
	for i := range specs {
		specs[i].Labels = map[string]string{"topology.kubernetes.io/zone": zones[i%3]}
	}
	specs[4].Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	specs[9].Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoExecute}}
	specs[14].Unschedulable = true // cordoned: agents still run there, as with DaemonSets
	specs[19].Labels[corev1.LabelOSStable] = "windows"
	if err := d.c.AddNodes(ctx, specs...); err != nil {
		return err
	}
	return d.c.WaitNodesReady(ctx, time.Minute, cluster.Names(specs)...)
}

func (d *demo) startManager(binary string) error {
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("manager binary %s: %w (run `make demo`, which builds it)", binary, err)
	}
	_, kubeconfig, err := d.c.AddUser("nodeagentset:manager", "system:masters")
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(binary)
	step("Starting the NodeAgentSet manager")
	if err := d.c.StartProcess("manager", abs, "--kubeconfig="+kubeconfig,
		"--metrics-bind-address=0", "--health-probe-bind-address=0"); err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(nasv1alpha1.AddToScheme(scheme))
	d.k, err = client.New(d.c.Config, client.Options{Scheme: scheme})
	return err
}

// script is the guided part: fan out, roll out, roll back.
func (d *demo) script(ctx context.Context) error {
	step("Applying NodeAgentSet monitoring/node-agent (image node-agent:1.0, nodeSelector kubernetes.io/os=linux)")
	first, err := d.apply(ctx, sampleSet())
	if err != nil {
		return err
	}
	d.whyNot(ctx)
	d.kubectl("get", "nas", "-n", "monitoring", "-o", "wide")

	step("Rolling out image node-agent:1.1 (maxUnavailable 20%, minReadySeconds 2)")
	start := time.Now()
	if err := d.setImage(ctx, "registry.example/node-agent:1.1"); err != nil {
		return err
	}
	if err := d.follow(ctx, "rollout", first); err != nil {
		return err
	}
	second := d.get(ctx).Status.UpdateRevision
	d.note("rolling update to 1.1", time.Since(start), fmt.Sprintf("revision %s", second))

	step("Rolling back to node-agent:1.0 (the template of the first revision)")
	start = time.Now()
	if err := d.setImage(ctx, "registry.example/node-agent:1.0"); err != nil {
		return err
	}
	if err := d.follow(ctx, "rollback", second); err != nil {
		return err
	}
	back := d.get(ctx).Status.UpdateRevision
	reused := "a new revision"
	if back == first {
		reused = "re-used revision " + back
	}
	d.note("rollback to 1.0", time.Since(start), reused)
	d.kubectl("get", "controllerrevisions", "-n", "monitoring")
	return nil
}

// apply creates set in namespace monitoring and follows its fan-out; it
// returns the set's first revision.
func (d *demo) apply(ctx context.Context, set *nasv1alpha1.NodeAgentSet) (string, error) {
	if err := d.k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}); err != nil {
		return "", err
	}
	d.set = set
	start := time.Now()
	if err := d.k.Create(ctx, d.set); err != nil {
		return "", err
	}
	if err := d.follow(ctx, "fan-out", ""); err != nil {
		return "", err
	}
	first := d.get(ctx).Status.UpdateRevision
	d.note("fan-out to every eligible node", time.Since(start), fmt.Sprintf("revision %s", first))
	return first, nil
}

func sampleSet() *nasv1alpha1.NodeAgentSet {
	labels := map[string]string{"app": "node-agent"}
	return &nasv1alpha1.NodeAgentSet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-agent", Namespace: "monitoring"},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Selector:        &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"app": "node-agent"}},
			MinReadySeconds: 2,
			UpdateStrategy: nasv1alpha1.UpdateStrategy{Type: nasv1alpha1.RollingUpdateStrategy,
				RollingUpdate: &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromString("20%"))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{corev1.LabelOSStable: "linux"},
					Containers:   []corev1.Container{{Name: "agent", Image: "registry.example/node-agent:1.0"}},
				},
			},
		},
	}
}

func (d *demo) get(ctx context.Context) *nasv1alpha1.NodeAgentSet {
	got := &nasv1alpha1.NodeAgentSet{}
	_ = d.k.Get(ctx, client.ObjectKeyFromObject(d.set), got)
	return got
}

func (d *demo) setImage(ctx context.Context, image string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := d.get(ctx)
		got.Spec.Template.Spec.Containers[0].Image = image
		return d.k.Update(ctx, got)
	})
}

// follow shows progress until the set has moved off revision `from` and
// settled: every desired node available, nothing left to update.
func (d *demo) follow(ctx context.Context, what, from string) error {
	deadline := time.Now().Add(2 * time.Minute)
	last := ""
	for {
		set := d.get(ctx)
		st := set.Status
		if st.ObservedGeneration != set.Generation || st.DesiredNumberScheduled == 0 {
			// The controller has not seen the change yet: nothing to show.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// Settled as the controller says it (Reconciling False): a cordoned
		// node is skipped by the rollout (unhealthyNodes Skip) and keeps its
		// older agent, so "every node updated" never comes.
		done := st.UpdateRevision != from && st.NumberAvailable == st.DesiredNumberScheduled &&
			meta.IsStatusConditionFalse(st.Conditions, nasv1alpha1.ConditionReconciling)
		line := fmt.Sprintf("  %-8s %s  updated %2d/%d  available %2d/%d  unavailable %d",
			what, bar(st.UpdatedNumberScheduled, st.NumberAvailable, st.DesiredNumberScheduled),
			st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.NumberAvailable, st.DesiredNumberScheduled, st.NumberUnavailable)
		switch {
		case d.tty:
			fmt.Printf("\r%s", line)
		case line != last:
			fmt.Println(line)
		}
		last = line
		if done {
			if d.tty {
				fmt.Println()
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not finish in 2 minutes; see %s", what, d.c.LogPath("manager"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// bar draws nodes updated and available (#), updated only (+), to do (.).
func bar(updated, available, desired int32) string {
	if desired == 0 {
		return "[" + strings.Repeat(" ", 20) + "]"
	}
	full := int(min(updated, available)) * 20 / int(desired)
	part := int(updated)*20/int(desired) - full
	return "[" + strings.Repeat("#", full) + strings.Repeat("+", max(part, 0)) + strings.Repeat(".", max(20-full-part, 0)) + "]"
}

// whyNot lists the nodes without an agent and why, from the same
// eligibility code the controller runs.
func (d *demo) whyNot(ctx context.Context) {
	var nodes corev1.NodeList
	if err := d.k.List(ctx, &nodes); err != nil {
		return
	}
	spec := eligibility.AgentSpec(&d.set.Spec.Template.Spec)
	fmt.Println("  nodes without an agent:")
	for _, n := range nodes.Items {
		if r := eligibility.Evaluate(&n, spec); !r.ShouldRun {
			fmt.Printf("    %-10s %s\n", n.Name, r.Reason)
		}
	}
}

func (d *demo) kubectl(args ...string) {
	fmt.Printf("  $ kubectl %s\n", strings.Join(args, " "))
	cmd := exec.Command(d.c.BinPath("kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.c.Kubeconfig)
	out, _ := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("    " + l)
	}
}

func (d *demo) note(what string, took time.Duration, result string) {
	d.summary = append(d.summary, [3]string{what, took.Round(100 * time.Millisecond).String(), result})
}

func (d *demo) printSummary() {
	step("Summary")
	fmt.Printf("  %-32s %-8s %s\n", "STEP", "TIME", "RESULT")
	for _, r := range d.summary {
		fmt.Printf("  %-32s %-8s %s\n", r[0], r[1], r[2])
	}
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

func isTerminal() bool {
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
