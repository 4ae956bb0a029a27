package podtemplate

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// ForNode is template with the node overrides that select node applied, in
// list order: an entry's resources replace the container's whole, then its
// resourcesFromAllocatable set single resources. Without an override that
// applies it returns template itself (not a copy), which callers must not
// modify.
func ForNode(template *corev1.PodTemplateSpec, overrides []nasv1alpha1.NodeOverride, node *corev1.Node) (*corev1.PodTemplateSpec, error) {
	out := template
	for i := range overrides {
		o := &overrides[i]
		match, err := selects(o.NodeSelector, node)
		if err != nil {
			return nil, fmt.Errorf("spec.nodeOverrides[%d].nodeSelector: %w", i, err)
		}
		if !match {
			continue
		}
		if out == template {
			out = template.DeepCopy()
		}
		for _, c := range o.Containers {
			target := container(out, c.Name)
			if target == nil {
				return nil, fmt.Errorf("spec.nodeOverrides[%d].containers: no container %q in spec.template", i, c.Name)
			}
			if c.Resources != nil {
				target.Resources = *c.Resources.DeepCopy()
			}
			for name, share := range c.ResourcesFromAllocatable {
				setShare(&target.Resources, name, share, node)
			}
		}
	}
	return out, nil
}

// CheckOverrides refuses what the CRD cannot within the API server's CEL
// cost budget: overrides naming a container the template lacks, a min
// above its max; and a selector that does not parse.
func CheckOverrides(spec *nasv1alpha1.NodeAgentSetSpec) error {
	for i, o := range spec.NodeOverrides {
		if _, err := selects(o.NodeSelector, &corev1.Node{}); err != nil {
			return fmt.Errorf("spec.nodeOverrides[%d].nodeSelector: %w", i, err)
		}
		for _, c := range o.Containers {
			if container(&spec.Template, c.Name) == nil {
				return fmt.Errorf("spec.nodeOverrides[%d].containers: no container %q in spec.template", i, c.Name)
			}
			for name, share := range c.ResourcesFromAllocatable {
				if share.Min != nil && share.Max != nil && share.Min.Cmp(*share.Max) > 0 {
					return fmt.Errorf("spec.nodeOverrides[%d].containers[%s].resourcesFromAllocatable[%s]: min %s is greater than max %s",
						i, c.Name, name, share.Min, share.Max)
				}
			}
		}
	}
	return nil
}

// selects tells whether an override's selector matches node; an empty or
// missing selector matches every node.
func selects(s *nasv1alpha1.LabelSelector, node *corev1.Node) (bool, error) {
	if s == nil {
		return true, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s.AsMeta())
	if err != nil {
		return false, err
	}
	return sel.Matches(labels.Set(node.Labels)), nil
}

func container(t *corev1.PodTemplateSpec, name string) *corev1.Container {
	for i := range t.Spec.Containers {
		if t.Spec.Containers[i].Name == name {
			return &t.Spec.Containers[i]
		}
	}
	return nil
}

// setShare sets the request of one resource, and its limit when the
// container has one, to the share of node's allocatable, clamped to
// [min, max]. A node that reports no allocatable of the resource gets min,
// or keeps the container's own value when there is no min either.
func setShare(r *corev1.ResourceRequirements, name corev1.ResourceName, share nasv1alpha1.AllocatableShare, node *corev1.Node) {
	var v resource.Quantity
	alloc, ok := node.Status.Allocatable[name]
	switch {
	case ok:
		v = percentOf(alloc, name, share.Percent)
	case share.Min != nil:
		v = share.Min.DeepCopy()
	default:
		return
	}
	if share.Min != nil && v.Cmp(*share.Min) < 0 {
		v = share.Min.DeepCopy()
	}
	if share.Max != nil && v.Cmp(*share.Max) > 0 {
		v = share.Max.DeepCopy()
	}
	if r.Requests == nil {
		r.Requests = corev1.ResourceList{}
	}
	r.Requests[name] = v
	if _, limited := r.Limits[name]; limited {
		r.Limits[name] = v.DeepCopy()
	}
}

// percentOf is percent of q, rounded down: in millicores for CPU, whole
// units (bytes, devices) for everything else.
func percentOf(q resource.Quantity, name corev1.ResourceName, percent int32) resource.Quantity {
	if name == corev1.ResourceCPU {
		return *resource.NewMilliQuantity(q.MilliValue()*int64(percent)/100, resource.DecimalSI)
	}
	return *resource.NewQuantity(q.Value()*int64(percent)/100, q.Format)
}
