package revision

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// goldenTemplate exercises what makes the two encodings differ: struct
// fields out of alphabetical order at every level, maps, numbers, and
// characters encoding/json escapes.
func goldenTemplate() *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      map[string]string{"app": "agent", "tier": "node"},
			Annotations: map[string]string{"note": "a < b && c > d"},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:    "agent",
				Image:   "registry.example/agent:1.2.3",
				Command: []string{"sh", "-c", "exec agent --port=9100 && true"},
				Ports:   []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100, HostPort: 9100, Protocol: corev1.ProtocolTCP}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
			}},
			HostNetwork:                   true,
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
}
