// Package revision turns templates into ControllerRevisions and back: the
// hash that names a revision, the revision object, finding the revision
// equal to a template (so a rollback re-uses it), and which old revisions
// history may prune. Pure.
package revision

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// data is what a ControllerRevision of a NodeAgentSet holds: the spec
// fields a pod is built from, in the shape of the set's spec.
type data struct {
	Spec Spec `json:"spec"`
}

// Spec is the part of a set's spec a revision holds. NodeOverrides is
// omitted when empty, so a set without overrides hashes as it did before
// they existed and no agent restarts on the controller's upgrade.
type Spec struct {
	Template      corev1.PodTemplateSpec     `json:"template"`
	NodeOverrides []nasv1alpha1.NodeOverride `json:"nodeOverrides,omitempty"`
}

// SpecOf is the revision part of a set's spec.
func SpecOf(set *nasv1alpha1.NodeAgentSet) *Spec {
	return &Spec{Template: set.Spec.Template, NodeOverrides: set.Spec.NodeOverrides}
}

// Encoded is a template in the two byte forms history deals in.
type Encoded struct {
	// Legacy is encoding/json of data: struct fields in declaration order,
	// map keys sorted. The hash is computed from it, and it must stay so:
	// the hash names the revision and labels every running pod, so hashing
	// anything else would restart every agent on the controller's upgrade.
	// Revisions written before Canonical existed store these bytes.
	Legacy []byte
	// Canonical is what a revision stores (see Canonical).
	Canonical []byte
}

// Encode is the revision payload of a template without node overrides.
func Encode(template *corev1.PodTemplateSpec) (Encoded, error) {
	return EncodeSpec(&Spec{Template: *template})
}

// EncodeSpec is the revision payload of spec, in both forms.
func EncodeSpec(spec *Spec) (Encoded, error) {
	d := data{Spec: *spec}
	legacy, err := json.Marshal(d)
	if err != nil {
		return Encoded{}, fmt.Errorf("encoding the pod template: %w", err)
	}
	canonical, err := Canonical(legacy)
	if err != nil {
		return Encoded{}, err
	}
	return Encoded{Legacy: legacy, Canonical: canonical}, nil
}

// Canonical re-encodes a JSON document as the API server does when it
// applies a patch to a ControllerRevision: every object's keys sorted,
// compact. The server then refuses the patch ("data: field is immutable")
// unless the re-encoded data equals the stored bytes, so a revision stored
// in any other form can never have its metadata patched: the garbage
// collector cannot orphan it (a --cascade=orphan deletion of the set then
// never finishes) and nobody can adopt or label it. The upstream DaemonSet
// controller stores json.Marshal of a map for the same reason. Numbers are
// kept as written (UseNumber), never rounded through float64.
func Canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding revision data: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decoding revision data: more than one JSON value")
	}
	return json.Marshal(v)
}

// IsCanonical tells whether a revision's data is stored in the canonical
// form, so that its metadata can be patched.
func IsCanonical(cr *appsv1.ControllerRevision) (bool, error) {
	canonical, err := Canonical(cr.Data.Raw)
	if err != nil {
		return false, fmt.Errorf("ControllerRevision %q: %w", cr.Name, err)
	}
	return bytes.Equal(canonical, cr.Data.Raw), nil
}

// Holds tells whether cr's data is encoded's template, in either form.
func Holds(cr *appsv1.ControllerRevision, encoded Encoded) bool {
	return bytes.Equal(cr.Data.Raw, encoded.Canonical) || bytes.Equal(cr.Data.Raw, encoded.Legacy)
}

// Decode reads the template back from a revision, in either form.
func Decode(cr *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	spec, err := DecodeSpec(cr)
	if err != nil {
		return nil, err
	}
	return &spec.Template, nil
}

// DecodeSpec reads the template and node overrides back from a revision.
func DecodeSpec(cr *appsv1.ControllerRevision) (*Spec, error) {
	var d data
	if err := json.Unmarshal(cr.Data.Raw, &d); err != nil {
		return nil, fmt.Errorf("decoding ControllerRevision %q: %w", cr.Name, err)
	}
	return &d.Spec, nil
}

// Hash names the revision of an encoded template, from its legacy form (see
// Encoded). The collision count salts it, so that when two templates hash
// alike the next try gets a new name.
func Hash(encoded Encoded, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(encoded.Legacy)
	if collisionCount != nil {
		var salt [4]byte
		binary.LittleEndian.PutUint32(salt[:], uint32(*collisionCount))
		h.Write(salt[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// ChangeCauseAnnotation on a set says why its template changed (kubectl's
// convention); each new revision records it.
const ChangeCauseAnnotation = "kubernetes.io/change-cause"

// Name is the ControllerRevision name for a hash: <set>-<hash>.
func Name(set *nasv1alpha1.NodeAgentSet, hash string) string { return set.Name + "-" + hash }

// Build returns the ControllerRevision for set's current template, stored
// in the canonical form.
func Build(set *nasv1alpha1.NodeAgentSet, encoded Encoded, hash string, number int64) *appsv1.ControllerRevision {
	labels := make(map[string]string, len(set.Spec.Template.Labels)+2)
	for k, v := range set.Spec.Template.Labels {
		labels[k] = v
	}
	labels[nasv1alpha1.LabelRevisionHash] = hash
	labels[nasv1alpha1.LabelSetName] = set.Name
	var annotations map[string]string
	if cause, ok := set.Annotations[ChangeCauseAnnotation]; ok {
		// Kept with the revision, as Deployments keep it with their
		// ReplicaSets, so the history can say why each revision exists.
		annotations = map[string]string{ChangeCauseAnnotation: cause}
	}
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:            Name(set, hash),
			Namespace:       set.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, nasv1alpha1.GroupVersion.WithKind("NodeAgentSet"))},
		},
		Data:     runtime.RawExtension{Raw: encoded.Canonical},
		Revision: number,
	}
}

// HashOf is the hash a revision was created under.
func HashOf(cr *appsv1.ControllerRevision) string {
	return cr.Labels[nasv1alpha1.LabelRevisionHash]
}

// FindEqual returns the revision that holds encoded's template (stored in
// either form), preferring the highest revision number, or nil.
func FindEqual(history []*appsv1.ControllerRevision, encoded Encoded) *appsv1.ControllerRevision {
	var found *appsv1.ControllerRevision
	for _, cr := range history {
		if Holds(cr, encoded) && (found == nil || cr.Revision > found.Revision) {
			found = cr
		}
	}
	return found
}

// Owned picks from a list the revisions whose controller is the set with
// this UID, oldest first (by revision number).
func Owned(items []appsv1.ControllerRevision, owner types.UID) []*appsv1.ControllerRevision {
	var out []*appsv1.ControllerRevision
	for i := range items {
		if ref := metav1.GetControllerOfNoCopy(&items[i]); ref != nil && ref.UID == owner {
			out = append(out, &items[i])
		}
	}
	slices.SortFunc(out, func(a, b *appsv1.ControllerRevision) int { return cmp.Compare(a.Revision, b.Revision) })
	return out
}

// MaxNumber is the highest revision number in history, 0 when empty.
func MaxNumber(history []*appsv1.ControllerRevision) int64 {
	var n int64
	for _, cr := range history {
		n = max(n, cr.Revision)
	}
	return n
}

// Prunable returns the revisions history may delete, oldest first: those
// beyond limit among the revisions that are neither live (used by a pod or
// named in keep) nor the newest limit old ones.
func Prunable(history []*appsv1.ControllerRevision, live map[string]bool, limit int32) []*appsv1.ControllerRevision {
	var old []*appsv1.ControllerRevision
	for _, cr := range history {
		if !live[HashOf(cr)] && !live[cr.Name] {
			old = append(old, cr)
		}
	}
	if len(old) <= int(limit) {
		return nil
	}
	slices.SortFunc(old, func(a, b *appsv1.ControllerRevision) int {
		if a.Revision != b.Revision {
			if a.Revision < b.Revision {
				return -1
			}
			return 1
		}
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	return old[:len(old)-int(limit)]
}
