package controller_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// hostPortRefusal is the message of the rule that keeps surge away from
// host ports (k/k #106417: the surge pod stays Pending, the rollout stalls).
const hostPortRefusal = "spec.updateStrategy.rollingUpdate.maxSurge: must be 0 when the template uses host ports"

// surge sets maxSurge (maxUnavailable 0, so only surging is possible).
func surge(v intstr.IntOrString) func(*nasv1alpha1.NodeAgentSet) {
	return rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxSurge, r.MaxUnavailable = &v, ptr.To(intstr.FromInt32(0)) })
}

func withPorts(ports ...corev1.ContainerPort) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.Containers[0].Ports = ports }
}

func withHostNetwork(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.HostNetwork = true }

// withInit adds an init container holding host port 9000; sidecar makes
// it a restartable (sidecar) init container, which runs as long as the pod.
func withInit(sidecar bool) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		c := corev1.Container{Name: "init", Image: "registry.example/init:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 9000, HostPort: 9000}}}
		if sidecar {
			c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		}
		s.Spec.Template.Spec.InitContainers = []corev1.Container{c}
	}
}

func manyContainers(n, ports int) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers = nil
		for i := range n {
			c := corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "registry.example/a:1"}
			for p := range ports {
				c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: int32(1000*i + p + 1)})
			}
			s.Spec.Template.Spec.Containers = append(s.Spec.Template.Spec.Containers, c)
		}
	}
}

func TestSurgeWithHostPortsIsRefused(t *testing.T) {
	f := newFixture(t, "hostport")
	hostPort := corev1.ContainerPort{ContainerPort: 9100, HostPort: 9100}
	plainPort := corev1.ContainerPort{ContainerPort: 9100}
	refused := []struct {
		name   string
		mutate []func(*nasv1alpha1.NodeAgentSet)
		want   string
	}{
		{"hostPort and maxSurge 1", []func(*nasv1alpha1.NodeAgentSet){withPorts(hostPort), surge(intstr.FromInt32(1))}, hostPortRefusal},
		{"hostPort and maxSurge 10%", []func(*nasv1alpha1.NodeAgentSet){withPorts(hostPort), surge(intstr.FromString("10%"))}, hostPortRefusal},
		{"hostNetwork, a container port and maxSurge 1", []func(*nasv1alpha1.NodeAgentSet){withHostNetwork, withPorts(plainPort), surge(intstr.FromInt32(1))}, hostPortRefusal},
		{"sidecar init container with a hostPort and maxSurge 1", []func(*nasv1alpha1.NodeAgentSet){withInit(true), surge(intstr.FromInt32(1))}, hostPortRefusal},
		{"the message says what to do instead", []func(*nasv1alpha1.NodeAgentSet){withPorts(hostPort), surge(intstr.FromInt32(1))}, "use maxUnavailable instead"},
		{"65 containers", []func(*nasv1alpha1.NodeAgentSet){manyContainers(65, 0)}, "spec.template.spec.containers: Too many"},
		{"129 ports in a container", []func(*nasv1alpha1.NodeAgentSet){manyContainers(1, 129)}, "spec.template.spec.containers[0].ports: Too many"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			set := f.newSet(tt.mutate...)
			err := k8s.Create(f.ctx, set, client.DryRunAll)
			if err == nil {
				t.Fatal("API server accepted an invalid NodeAgentSet")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	accepted := []struct {
		name   string
		mutate []func(*nasv1alpha1.NodeAgentSet)
	}{
		{"hostPort and maxSurge 0", []func(*nasv1alpha1.NodeAgentSet){withPorts(hostPort), rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxSurge = ptr.To(intstr.FromInt32(0)) })}},
		{"hostPort and maxSurge 0%", []func(*nasv1alpha1.NodeAgentSet){withPorts(hostPort), rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxSurge = ptr.To(intstr.FromString("0%")) })}},
		{"hostPort and the default strategy", []func(*nasv1alpha1.NodeAgentSet){withPorts(hostPort)}},
		{"plain port and maxSurge 1", []func(*nasv1alpha1.NodeAgentSet){withPorts(plainPort), surge(intstr.FromInt32(1))}},
		{"hostNetwork without ports and maxSurge 1", []func(*nasv1alpha1.NodeAgentSet){withHostNetwork, surge(intstr.FromInt32(1))}},
		// The scheduler counts the ports of sidecars and containers only: a
		// plain init container has finished before the agent runs.
		{"plain init container with a hostPort and maxSurge 1", []func(*nasv1alpha1.NodeAgentSet){withInit(false), surge(intstr.FromInt32(1))}},
		{"hostPort, maxSurge 1 and OnDelete (which never surges)", []func(*nasv1alpha1.NodeAgentSet){withPorts(hostPort), surge(intstr.FromInt32(1)),
			func(s *nasv1alpha1.NodeAgentSet) { s.Spec.UpdateStrategy.Type = nasv1alpha1.OnDeleteStrategy }}},
		{"64 containers of 128 ports with maxSurge 1", []func(*nasv1alpha1.NodeAgentSet){manyContainers(64, 128), surge(intstr.FromInt32(1))}},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			if err := k8s.Create(f.ctx, f.newSet(tt.mutate...), client.DryRunAll); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}
