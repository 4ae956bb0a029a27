package plugin

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// patience bounds every wait for something another goroutine does; generous,
// since a loaded CI machine is slow.
const patience = 2 * time.Minute

// syncBuffer is an output stream the test reads while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rollout status follows the set through a watch: it reports the rollout
// in progress, then returns as soon as the set's status says complete.
func TestRolloutStatusWatchesTheSet(t *testing.T) {
	c := apiServer(t)
	f := newFixture(t, "watch", nasv1alpha1.RollingUpdateStrategy, "registry.example/agent:1", "registry.example/agent:2")
	f.status(t, settled(1, 2, false))

	out := mustPlugin(t, c.Kubeconfig, "-n", f.ns, "rollout", "status", "agent", "--watch=false")
	contains(t, "--watch=false", out, "Waiting for nodeagentset.nodeagentset.io/agent rollout to finish: 1 of 3 nodes updated, 2 available...")
	if _, _, err := plugin(t, c.Kubeconfig, nil, "-n", f.ns, "rollout", "status", "agent", "--timeout", "1s"); err == nil || !strings.Contains(err.Error(), "timed out after 1s") {
		t.Errorf("--timeout on a rollout that does not finish: %v", err)
	}

	var stdout syncBuffer
	streams := testStreams()
	streams.Out = &stdout
	cmd := NewCommand(streams)
	cmd.SetArgs([]string{"--kubeconfig", c.Kubeconfig, "-n", f.ns, "rollout", "status", "agent", "--timeout", patience.String()})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(context.Background()) }()
	deadline := time.Now().Add(patience)
	for !strings.Contains(stdout.String(), "1 of 3 nodes updated") {
		if time.Now().After(deadline) {
			t.Fatalf("rollout status printed no progress:\n%s", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.status(t, settled(2, 3, false))
	f.status(t, settled(3, 3, true))
	if err := <-done; err != nil {
		t.Fatalf("rollout status: %v\n%s", err, stdout.String())
	}
	contains(t, "rollout status", stdout.String(), "nodeagentset.nodeagentset.io/agent successfully rolled out (3 nodes)")
}

// With OnDelete the controller is done once every node has an agent, old
// or new; rollout status says how many still run an old revision instead
// of "successfully rolled out" (kubectl refuses OnDelete DaemonSets
// outright), and succeeds once none does.
func TestRolloutStatusOnDeleteCountsOldNodes(t *testing.T) {
	c := apiServer(t)
	f := newFixture(t, "ondelete", nasv1alpha1.OnDeleteStrategy, "registry.example/agent:1", "registry.example/agent:2")
	f.status(t, settled(1, 3, true))
	_, _, err := plugin(t, c.Kubeconfig, nil, "-n", f.ns, "rollout", "status", "agent", "--timeout", patience.String())
	if err == nil || !strings.Contains(err.Error(), "uses the OnDelete strategy: 2 of 3 nodes still run an old revision; delete their pods to update them") {
		t.Errorf("OnDelete with old agents: %v", err)
	}
	f.status(t, settled(3, 3, true))
	contains(t, "OnDelete, all updated", mustPlugin(t, c.Kubeconfig, "-n", f.ns, "rollout", "status", "agent"), "successfully rolled out (3 nodes)")
}

// undo to the revision the set already runs changes nothing and says so,
// in kubectl's words; to another revision it rolls back.
func TestUndoSaysWhenAlreadyAtTheRevision(t *testing.T) {
	c := apiServer(t)
	f := newFixture(t, "undo", nasv1alpha1.RollingUpdateStrategy, "registry.example/agent:1", "registry.example/agent:2")
	out := mustPlugin(t, c.Kubeconfig, "-n", f.ns, "rollout", "undo", "agent", "--to-revision", "2")
	contains(t, "undo to the current revision", out, "nodeagentset.nodeagentset.io/agent skipped rollback (current template already matches revision 2)")
	image := func() string {
		set := &nasv1alpha1.NodeAgentSet{}
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(f.set), set); err != nil {
			t.Fatal(err)
		}
		return set.Spec.Template.Spec.Containers[0].Image
	}
	if got := image(); got != "registry.example/agent:2" {
		t.Fatalf("a skipped rollback changed the image to %s", got)
	}
	contains(t, "undo", mustPlugin(t, c.Kubeconfig, "-n", f.ns, "rollout", "undo", "agent"), "rolled back to revision 1")
	if got := image(); got != "registry.example/agent:1" {
		t.Errorf("after undo the image is %s", got)
	}
	contains(t, "undo again", mustPlugin(t, c.Kubeconfig, "-n", f.ns, "rollout", "undo", "agent", "--to-revision", "1"), "skipped rollback (current template already matches revision 1)")
}

// restart stamps kubectl's own annotation, with the time in RFC 3339.
func TestRestartStampsKubectlsAnnotation(t *testing.T) {
	c := apiServer(t)
	f := newFixture(t, "restart", nasv1alpha1.RollingUpdateStrategy, "registry.example/agent:1")
	before := time.Now().Truncate(time.Second)
	contains(t, "restart", mustPlugin(t, c.Kubeconfig, "-n", f.ns, "rollout", "restart", "agent"), "nodeagentset.nodeagentset.io/agent restarted")
	set := &nasv1alpha1.NodeAgentSet{}
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(f.set), set); err != nil {
		t.Fatal(err)
	}
	stamp := set.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]
	at, err := time.Parse(time.RFC3339, stamp)
	if err != nil || at.Before(before) {
		t.Errorf("restartedAt %q (%v), want an RFC 3339 time not before %v", stamp, err, before)
	}
}

// status -l keeps the nodes with those labels (the plan still sees every
// node); -o wide adds pod and images. A user whose RBAC stops at the
// namespace cannot list nodes: status says so and shows the pods' nodes.
func TestStatusSelectsNodesAndWorksWithNamespaceRBAC(t *testing.T) {
	c := apiServer(t)
	ctx := t.Context()
	f := newFixture(t, "nodes", nasv1alpha1.RollingUpdateStrategy, "registry.example/agent:1", "registry.example/agent:2")
	for _, n := range []string{"pool-a-1", "pool-b-1"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"pool": n[:6]}}}
		if err := k8s.Create(ctx, node); err != nil {
			t.Fatal(err)
		}
	}
	revs, err := history(ctx, k8s, f.set)
	if err != nil {
		t.Fatal(err)
	}
	pod := podtemplate.Build(f.set, &f.set.Spec.Template, revision.HashOf(revs[1]), "pool-a-1")
	pod.Spec.NodeName = "pool-a-1"
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}

	out := mustPlugin(t, c.Kubeconfig, "-n", f.ns, "status", "agent", "-l", "pool=pool-a", "-o", "wide")
	contains(t, "status -l -o wide", out, "POD")
	contains(t, "status -l -o wide", out, pod.Name)
	contains(t, "status -l -o wide", out, "registry.example/agent:2")
	if strings.Contains(out, "pool-b-1") {
		t.Errorf("status -l pool=pool-a shows pool-b-1:\n%s", out)
	}
	contains(t, "status", mustPlugin(t, c.Kubeconfig, "-n", f.ns, "status", "agent"), "pool-b-1")

	_, kubeconfig, err := c.AddUser("namespace-reader")
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "read"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"nodeagentset.io"}, Resources: []string{"nodeagentsets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"controllerrevisions"}, Verbs: []string{"get", "list", "watch"}},
	}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "read"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "namespace-reader"}}}
	for _, obj := range []client.Object{role, binding} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, err := plugin(t, kubeconfig, nil, "-n", f.ns, "status", "agent")
	if err != nil {
		t.Fatalf("status with namespace RBAC: %v\n%s", err, errOut)
	}
	contains(t, "warning", errOut, "Warning: nodes could not be read")
	contains(t, "rows from pods", out, "pool-a-1")
	contains(t, "rows from pods", out, " (update)")
	if strings.Contains(out, "pool-b-1") {
		t.Errorf("a node the user cannot see is shown:\n%s", out)
	}
	if _, _, err := plugin(t, kubeconfig, nil, "-n", f.ns, "status", "agent", "-l", "pool=pool-a"); err == nil || !strings.Contains(err.Error(), "--selector needs permission to list nodes") {
		t.Errorf("status -l with namespace RBAC: %v", err)
	}
}
