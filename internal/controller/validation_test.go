package controller_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plugin"
)

func rolling(mutate func(*nasv1alpha1.RollingUpdate)) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		ru := &nasv1alpha1.RollingUpdate{}
		mutate(ru)
		s.Spec.UpdateStrategy = nasv1alpha1.UpdateStrategy{Type: nasv1alpha1.RollingUpdateStrategy, RollingUpdate: ru}
	}
}

// intOrPercent is the message of every int-or-percent field's rule.
const intOrPercent = "must be an integer ≥ 0 or a percent from 0% to 100%"

// selectLabel makes the selector and the template labels both hold key=value.
func selectLabel(key, value string) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Selector.MatchLabels = map[string]nasv1alpha1.LabelValue{key: nasv1alpha1.LabelValue(value)}
		s.Spec.Template.Labels = map[string]string{key: value}
	}
}

// selectExpr adds a requirement to the selector.
func selectExpr(r nasv1alpha1.LabelSelectorRequirement) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Selector.MatchExpressions = []nasv1alpha1.LabelSelectorRequirement{r}
	}
}

// nodeSelector sets rollingUpdate.nodeSelector to one requirement.
func nodeSelector(r nasv1alpha1.LabelSelectorRequirement) func(*nasv1alpha1.NodeAgentSet) {
	return rolling(func(ru *nasv1alpha1.RollingUpdate) {
		ru.NodeSelector = &nasv1alpha1.LabelSelector{MatchExpressions: []nasv1alpha1.LabelSelectorRequirement{r}}
	})
}

func TestInvalidSpecsAreRefusedNamingTheField(t *testing.T) {
	f := newFixture(t, "invalid")
	zero, pct0 := intstr.FromInt32(0), intstr.FromString("0%")
	tests := []struct {
		name   string
		mutate func(*nasv1alpha1.NodeAgentSet)
		want   string // substring of the API server's message
	}{
		{"empty selector", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Selector = &nasv1alpha1.LabelSelector{} },
			"spec.selector: must not be empty"},
		{"selector does not match template labels", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Selector.MatchLabels = map[string]nasv1alpha1.LabelValue{"app": "other"}
		}, "spec.selector: matchLabels do not match spec.template.metadata.labels"},
		{"selector expression does not match template labels", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Selector.MatchExpressions = []nasv1alpha1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}}
		}, "spec.selector: matchExpressions do not match spec.template.metadata.labels"},
		{"restartPolicy Never", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			"spec.template.spec.restartPolicy"},
		{"activeDeadlineSeconds", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.ActiveDeadlineSeconds = ptr.To[int64](60) },
			"spec.template.spec.activeDeadlineSeconds"},
		{"maxUnavailable and maxSurge both 0", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable, r.MaxSurge = &zero, &zero }),
			"maxUnavailable and maxSurge must not both be zero"},
		{"maxUnavailable and maxSurge both 0%", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable, r.MaxSurge = &pct0, &pct0 }),
			"maxUnavailable and maxSurge must not both be zero"},
		{"maxUnavailable 0 with default maxSurge", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable = &zero }),
			"maxUnavailable and maxSurge must not both be zero"},
		{"maxUnavailable over 100%", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable = ptr.To(intstr.FromString("150%")) }),
			"spec.updateStrategy.rollingUpdate.maxUnavailable"},
		{"maxSurge not a percent", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxSurge = ptr.To(intstr.FromString("ten")) }),
			"spec.updateStrategy.rollingUpdate.maxSurge"},
		{"negative maxSurge", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxSurge = ptr.To(intstr.FromInt32(-1)) }),
			"spec.updateStrategy.rollingUpdate.maxSurge: " + intOrPercent},
		{"negative partition", rolling(func(r *nasv1alpha1.RollingUpdate) { r.Partition = ptr.To(intstr.FromInt32(-2)) }),
			"spec.updateStrategy.rollingUpdate.partition: " + intOrPercent},
		{"maxUnavailable over 100% says what is allowed", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable = ptr.To(intstr.FromString("101%")) }),
			"spec.updateStrategy.rollingUpdate.maxUnavailable: " + intOrPercent},
		{"maxSurge not a percent says what is allowed", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxSurge = ptr.To(intstr.FromString("5")) }),
			"spec.updateStrategy.rollingUpdate.maxSurge: " + intOrPercent},
		{"partition negative percent says what is allowed", rolling(func(r *nasv1alpha1.RollingUpdate) { r.Partition = ptr.To(intstr.FromString("-5%")) }),
			"spec.updateStrategy.rollingUpdate.partition: " + intOrPercent},
		{"name longer than 63 characters", func(s *nasv1alpha1.NodeAgentSet) { s.Name = strings.Repeat("n", 64) },
			"metadata.name: must be no more than 63 characters"},
		{"selector value not a label value", selectLabel("app", "bad value!"),
			"spec.selector.matchLabels[app]: Invalid value"},
		{"selector key not a label key", selectLabel("bad key!", "x"),
			"spec.selector.matchLabels: Invalid value"},
		{"selector key with an upper-case prefix", selectLabel("Example.com/app", "x"),
			"spec.selector.matchLabels: Invalid value"},
		{"selector key name longer than 63", selectLabel("example.com/"+strings.Repeat("k", 64), "x"),
			"spec.selector.matchLabels: Invalid value"},
		{"selector key prefix longer than 253", selectLabel(strings.Repeat("p", 254)+"/k", "x"),
			"spec.selector.matchLabels: Invalid value"},
		{"selector expression key not a label key", selectExpr(nasv1alpha1.LabelSelectorRequirement{Key: "-app", Operator: metav1.LabelSelectorOpExists}),
			"spec.selector.matchExpressions[0].key"},
		{"selector In without values", selectExpr(nasv1alpha1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpIn}),
			"spec.selector.matchExpressions[0].values"},
		{"selector value of an expression not a label value", selectExpr(nasv1alpha1.LabelSelectorRequirement{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"a b"}}),
			"spec.selector.matchExpressions[0].values"},
		{"nodeSelector unknown operator", nodeSelector(nasv1alpha1.LabelSelectorRequirement{Key: "zone", Operator: "Gt", Values: []string{"1"}}),
			"spec.updateStrategy.rollingUpdate.nodeSelector.matchExpressions[0].operator"},
		{"nodeSelector key not a label key", nodeSelector(nasv1alpha1.LabelSelectorRequirement{Key: "bad key", Operator: metav1.LabelSelectorOpExists}),
			"spec.updateStrategy.rollingUpdate.nodeSelector.matchExpressions[0].key"},
		{"nodeSelector Exists with values", nodeSelector(nasv1alpha1.LabelSelectorRequirement{Key: "zone", Operator: metav1.LabelSelectorOpExists, Values: []string{"a"}}),
			"spec.updateStrategy.rollingUpdate.nodeSelector.matchExpressions[0].values"},
		{"nodeSelector NotIn without values", nodeSelector(nasv1alpha1.LabelSelectorRequirement{Key: "zone", Operator: metav1.LabelSelectorOpNotIn, Values: []string{}}),
			"spec.updateStrategy.rollingUpdate.nodeSelector.matchExpressions[0].values"},
		{"nodeSelector label value not a label value", rolling(func(r *nasv1alpha1.RollingUpdate) {
			r.NodeSelector = &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"canary": "yes!"}}
		}), "spec.updateStrategy.rollingUpdate.nodeSelector.matchLabels[canary]"},
		{"template label value not a label value", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Labels["tier"] = "-x" },
			"spec.template.metadata.labels.tier"},
		{"no container", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.Containers = []corev1.Container{} },
			"spec.template.spec.containers"},
		{"container name not a DNS-1123 label", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.Containers[0].Name = "Agent_1" },
			"spec.template.spec.containers[0].name"},
		{"container name longer than 63", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.Containers[0].Name = strings.Repeat("c", 64) },
			"spec.template.spec.containers[0].name"},
		{"init container name not a DNS-1123 label", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init.1", Image: "registry.example/init:1"}}
		}, "spec.template.spec.initContainers[0].name"},
		{"duplicate container names", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Template.Spec.Containers = append(s.Spec.Template.Spec.Containers, corev1.Container{Name: "agent", Image: "registry.example/b:1"})
		}, "spec.template.spec.containers[1]"},
		{"ephemeral container", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Template.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
		}, "spec.template.spec.ephemeralContainers"},
		{"unknown strategy", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.UpdateStrategy.Type = "Recreate" },
			"spec.updateStrategy.type"},
		{"negative minReadySeconds", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.MinReadySeconds = -1 },
			"spec.minReadySeconds"},
		{"negative revisionHistoryLimit", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.RevisionHistoryLimit = ptr.To[int32](-1) },
			"spec.revisionHistoryLimit"},
		{"zero progressDeadlineSeconds", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.ProgressDeadlineSeconds = ptr.To[int32](0) },
			"spec.progressDeadlineSeconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "invalid" }, tt.mutate)
			err := k8s.Create(f.ctx, set)
			if err == nil {
				t.Fatalf("API server accepted an invalid NodeAgentSet")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

func TestDefaultsAndImmutableSelector(t *testing.T) {
	f := newFixture(t, "defaults")
	set := f.set()
	got := f.get(set)
	ru := got.Spec.UpdateStrategy.RollingUpdate
	if got.Spec.UpdateStrategy.Type != nasv1alpha1.RollingUpdateStrategy || ru == nil ||
		ru.MaxUnavailable.String() != "1" || ru.MaxSurge.String() != "0" || ru.Partition.String() != "0" ||
		ptr.Deref(got.Spec.RevisionHistoryLimit, -1) != 10 {
		t.Errorf("defaults not applied: %+v revisionHistoryLimit %v", got.Spec.UpdateStrategy, got.Spec.RevisionHistoryLimit)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := f.get(set) // the controller writes status meanwhile
		got.Spec.Selector.MatchLabels["extra"] = "x"
		got.Spec.Template.Labels["extra"] = "x"
		return k8s.Update(f.ctx, got)
	})
	if err == nil || !strings.Contains(err.Error(), "spec.selector: field is immutable") {
		t.Errorf("changing the selector: got %v, want a refusal naming spec.selector", err)
	}
}

// unstructuredSet is newSet as a map, for values the Go types cannot hold.
func (f *fixture) unstructuredSet(name string) *unstructured.Unstructured {
	f.t.Helper()
	set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Name = name
		s.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080}}
		s.Spec.Template.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
		}
	})
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(set)
	if err != nil {
		f.t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetGroupVersionKind(nasv1alpha1.GroupVersion.WithKind("NodeAgentSet"))
	return u
}

// setField sets the field at path (a dotted path; a number indexes a list).
func setField(t *testing.T, obj map[string]any, path string, value any) {
	t.Helper()
	parts := strings.Split(path, ".")
	var cur any = obj
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[p] = value
				return
			}
			if c[p] == nil {
				c[p] = map[string]any{}
			}
			cur = c[p]
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n >= len(c) {
				t.Fatalf("%s: no item %s", path, p)
			}
			if last {
				c[n] = value
				return
			}
			cur = c[n]
		default:
			t.Fatalf("%s: %s is not an object or list", path, strings.Join(parts[:i], "."))
		}
	}
}

// An integer beyond int32 in any int32 field used to be stored, and then
// the manager's informer failed to decode every list and watch of
// NodeAgentSets: no set in the cluster was reconciled. The API server does
// not check `format: int32`; the CRD's minimum and maximum do.
func TestIntegersBeyondTheirGoTypeAreRefused(t *testing.T) {
	f := newFixture(t, "overflow")
	const pod = "spec.template.spec."
	const ctr = pod + "containers.0."
	tests := []struct {
		path  string
		value any
	}{
		{"spec.updateStrategy.rollingUpdate.maxUnavailable", int64(99999999999)},
		{"spec.updateStrategy.rollingUpdate.maxSurge", int64(2147483648)},
		{"spec.updateStrategy.rollingUpdate.partition", int64(99999999999)},
		{"spec.minReadySeconds", int64(2147483648)},
		{"spec.revisionHistoryLimit", int64(99999999999)},
		{"spec.progressDeadlineSeconds", int64(99999999999)},
		{ctr + "ports.0.containerPort", int64(99999999999)},
		{ctr + "ports.0.hostPort", int64(-99999999999)},
		{ctr + "readinessProbe.periodSeconds", int64(99999999999)},
		{ctr + "readinessProbe.httpGet.port", int64(99999999999)},
		{pod + "priority", int64(-2147483649)},
		// int64 fields: a number beyond int64 is not an integer to the server.
		{pod + "terminationGracePeriodSeconds", float64(1e20)},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			u := f.unstructuredSet("overflow")
			setField(t, u.Object, tt.path, tt.value)
			err := k8s.Create(f.ctx, u)
			if err == nil {
				_ = k8s.Delete(f.ctx, u)
				t.Fatalf("API server accepted %s: %v", tt.path, tt.value)
			}
			// The server names list items with brackets: containers[0].
			want := regexp.MustCompile(`\.(\d+)`).ReplaceAllString(tt.path, "[$1]")
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
			t.Log(err)
		})
	}
}

// Every int32 of the CRD (the pod template's included) and the integer of
// every intstr.IntOrString carry the int32 range, so no field is missed
// that a test above does not name; a resource.Quantity (the other
// int-or-string, with a pattern) does not.
func TestEveryInt32OfTheCRDIsBounded(t *testing.T) {
	var crd map[string]any
	b, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	var bounded, unbounded, quantities []string
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		_, hasPattern := s["pattern"]
		_, hasMax := s["maximum"]
		switch {
		case s["x-kubernetes-int-or-string"] == true && hasPattern:
			if hasMax {
				t.Errorf("%s: a quantity has a maximum", path)
			}
			quantities = append(quantities, path)
		case s["format"] == "int32" || s["x-kubernetes-int-or-string"] == true:
			lo, okLo := s["minimum"].(float64)
			hi, okHi := s["maximum"].(float64)
			if okLo && okHi && lo >= math.MinInt32 && hi <= math.MaxInt32 {
				bounded = append(bounded, path)
			} else {
				unbounded = append(unbounded, path)
			}
		}
		if props, ok := s["properties"].(map[string]any); ok {
			for k, v := range props {
				walk(path+"."+k, v.(map[string]any))
			}
		}
		for _, k := range []string{"items", "additionalProperties"} {
			if sub, ok := s[k].(map[string]any); ok {
				walk(path+"[]", sub)
			}
		}
	}
	versions := crd["spec"].(map[string]any)["versions"].([]any)
	for _, v := range versions {
		walk("", v.(map[string]any)["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any))
	}
	slices.Sort(unbounded)
	if len(unbounded) > 0 || len(bounded) < 50 {
		t.Errorf("%d int32 fields bounded; not bounded to the int32 range: %v", len(bounded), unbounded)
	}
	if len(quantities) < 10 {
		t.Errorf("found %d quantities, want the pod template's resources among them: %v", len(quantities), quantities)
	}
}

func TestBoundaryValuesAreAccepted(t *testing.T) {
	f := newFixture(t, "boundary")
	max32 := intstr.FromInt32(math.MaxInt32)
	key := strings.Repeat("p", 253) + "/" + strings.Repeat("k", 63)
	value := strings.Repeat("v", 63)
	tests := []struct {
		name   string
		mutate func(*nasv1alpha1.NodeAgentSet)
	}{
		{"63-character name", func(s *nasv1alpha1.NodeAgentSet) { s.Name = strings.Repeat("n", 63) }},
		{"largest int32s", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.MinReadySeconds = math.MaxInt32
			s.Spec.RevisionHistoryLimit = ptr.To[int32](math.MaxInt32)
			s.Spec.ProgressDeadlineSeconds = ptr.To[int32](math.MaxInt32)
			s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: &max32, MaxSurge: &max32, Partition: &max32}
			// A host port would forbid maxSurge (TestSurgeWithHostPortsIsRefused).
			s.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 65535}}
			s.Spec.Template.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: math.MaxInt32,
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(65535)}}}
		}},
		{"largest host port", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 65535, HostPort: 65535}}
		}},
		{"100% and 0%", rolling(func(r *nasv1alpha1.RollingUpdate) {
			r.MaxUnavailable, r.MaxSurge, r.Partition = ptr.To(intstr.FromString("100%")), ptr.To(intstr.FromString("100%")), ptr.To(intstr.FromString("0%"))
		})},
		{"longest label key and value", selectLabel(key, value)},
		{"selector expressions of every operator", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Template.Labels["tier"] = "node"
			s.Spec.Selector.MatchExpressions = []nasv1alpha1.LabelSelectorRequirement{
				{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"node", "a.b_c-d"}},
				{Key: "example.com/tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{""}},
				{Key: "tier", Operator: metav1.LabelSelectorOpExists},
				{Key: "gone", Operator: metav1.LabelSelectorOpDoesNotExist},
			}
			s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{NodeSelector: &nasv1alpha1.LabelSelector{
				MatchLabels: map[string]nasv1alpha1.LabelValue{"topology.kubernetes.io/zone": "eu-1a", "canary": ""},
				MatchExpressions: []nasv1alpha1.LabelSelectorRequirement{
					{Key: "node.example.com/pool", Operator: metav1.LabelSelectorOpIn, Values: []string{"A1"}},
				},
			}}
		}},
		{"init containers and containers with distinct names", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init-" + strings.Repeat("x", 58), Image: "registry.example/init:1"}}
			s.Spec.Template.Spec.Containers = append(s.Spec.Template.Spec.Containers, corev1.Container{Name: "0sidecar9", Image: "registry.example/b:1"})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := f.newSet(tt.mutate)
			if err := k8s.Create(f.ctx, set, client.DryRunAll); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
	// A quantity is no int32: 4 GiB as a plain number is a valid limit.
	t.Run("quantity beyond int32", func(t *testing.T) {
		u := f.unstructuredSet("quantity")
		setField(t, u.Object, "spec.template.spec.containers.0.resources", map[string]any{
			"limits": map[string]any{"memory": int64(4294967296)},
		})
		if err := k8s.Create(f.ctx, u, client.DryRunAll); err != nil {
			t.Errorf("refused: %v", err)
		}
	})
}

// The samples and the DaemonSets of testdata (converted as `kubectl
// nodeagentset convert` does) must stay valid under the rules.
func TestSamplesAndConvertedDaemonSetsAreAccepted(t *testing.T) {
	f := newFixture(t, "samples")
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	testdata, err := filepath.Glob(filepath.Join("..", "..", "test", "e2e", "testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, file := range append(files, testdata...) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(b, &meta); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch meta.Kind {
		case "NodeAgentSet":
		case "DaemonSet":
			if b, err = plugin.Convert(b); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
		default:
			continue
		}
		var set nasv1alpha1.NodeAgentSet
		if err := yaml.UnmarshalStrict(b, &set); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		set.Namespace = f.ns
		if err := k8s.Create(f.ctx, &set, client.DryRunAll); err != nil {
			t.Errorf("%s: refused: %v", file, err)
		}
		checked++
	}
	if checked < 3 {
		t.Errorf("checked %d manifests, want the 2 samples and the testdata DaemonSet at least", checked)
	}
}

// crdFile is the CRD the suite installs.
var crdFile = filepath.Join("..", "..", "config", "crd", "bases", "nodeagentset.io_nodeagentsets.yaml")

// `kubectl apply` (client-side) keeps the whole object, as compact JSON, in
// an annotation; all annotations together may hold 262144 bytes. The
// server-side dry run below sets that annotation as kubectl would.
func TestCRDFitsKubectlApply(t *testing.T) {
	b, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	last, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, last); err != nil {
		t.Fatal(err)
	}
	t.Logf("CRD: %d bytes of YAML, %d bytes in the last-applied annotation", len(b), compact.Len())
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	if err := k8s.Get(t.Context(), client.ObjectKey{Name: "nodeagentsets.nodeagentset.io"}, crd); err != nil {
		t.Fatal(err)
	}
	annotations := crd.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations["kubectl.kubernetes.io/last-applied-configuration"] = compact.String()
	crd.SetAnnotations(annotations)
	if err := k8s.Update(t.Context(), crd, client.DryRunAll); err != nil {
		t.Errorf("the CRD with kubectl's annotation is refused: %v", err)
	}
}
