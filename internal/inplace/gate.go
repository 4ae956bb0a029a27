package inplace

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// HasGate tells whether pod carries the in-place readiness gate.
func HasGate(pod *corev1.Pod) bool {
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType == nasv1alpha1.ReadinessGateInPlace {
			return true
		}
	}
	return false
}

// gateStatus is the status of pod's in-place gate condition; "" when the
// condition is not there yet.
func gateStatus(pod *corev1.Pod) corev1.ConditionStatus {
	for _, c := range pod.Status.Conditions {
		if c.Type == nasv1alpha1.ReadinessGateInPlace {
			return c.Status
		}
	}
	return ""
}

// ShouldOpen tells whether pod's gate is to be set True: a pod carrying
// the gate without its condition is new (nothing else ever sets it, and
// until it is True the kubelet keeps the pod unready for ever); a pod
// whose gate is False is being updated in place and opens once every
// container runs the image its spec names and is ready.
func ShouldOpen(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || !HasGate(pod) {
		return false
	}
	switch gateStatus(pod) {
	case corev1.ConditionTrue:
		return false
	case "":
		return true
	}
	return Updated(pod)
}

// Updated tells whether every container of pod reports running the image
// its spec names, and ready.
func Updated(pod *corev1.Pod) bool {
	status := make(map[string]*corev1.ContainerStatus, len(pod.Status.ContainerStatuses))
	for i := range pod.Status.ContainerStatuses {
		status[pod.Status.ContainerStatuses[i].Name] = &pod.Status.ContainerStatuses[i]
	}
	for _, c := range pod.Spec.Containers {
		s := status[c.Name]
		if s == nil || !s.Ready || !SameImage(c.Image, s.Image) {
			return false
		}
	}
	return true
}

// SameImage compares an image as a spec names it with the image a
// container status reports, which runtimes write fully qualified
// ("nginx" runs as "docker.io/library/nginx:latest").
func SameImage(spec, status string) bool {
	return spec == status || qualified(spec) == qualified(status)
}

func qualified(image string) string {
	name := image
	for _, p := range []string{"docker.io/", "index.docker.io/"} {
		name = strings.TrimPrefix(name, p)
	}
	if !strings.Contains(name, "/") {
		name = "library/" + name
	}
	last := name[strings.LastIndex(name, "/")+1:]
	if !strings.ContainsAny(last, ":@") {
		name += ":latest"
	}
	return "docker.io/" + name
}
