// Command crdfinish rewrites the CRD that controller-gen generated, adding
// what markers cannot say about types the project does not own (the
// embedded corev1.PodTemplateSpec). `make manifests` runs it on every CRD
// under config/crd/bases. Its output depends only on its input.
//
//   - Every int32 and every intstr.IntOrString (an int32 in Go) gets the
//     int32 range as minimum and maximum, unless it has tighter bounds. An
//     int-or-string has no `format`, so the API server stored any integer
//     there; then every typed client (the manager's informer among them)
//     failed to decode the list it was in, and no set was reconciled. A
//     plain int32 is refused by its format already, but with a message
//     whose field path is <nil>; the bounds give a plain one.
//   - The descriptions inside spec.template are cut to their first sentence.
//     Whole, they make the CRD too big for `kubectl apply` (client-side
//     apply keeps the object in an annotation of at most 262144 bytes);
//     `kubectl explain pod.spec` has them in full.
//   - What apps/v1 refuses in a pod template and a schema can say within
//     the API server's CEL cost budget: at least one container; container
//     and init container names are DNS-1123 labels; label values are label
//     values.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

type schema = map[string]any

func main() {
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: crdfinish CRD.yaml... (rewritten in place)")
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, path := range flag.Args() {
		if err := rewrite(path); err != nil {
			log.Fatalf("%s: %v", path, err)
		}
	}
}

func rewrite(path string) error {
	in, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := finish(in)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// finish returns the CRD with the additions above, as YAML.
func finish(in []byte) ([]byte, error) {
	var crd schema
	if err := yaml.Unmarshal(in, &crd); err != nil {
		return nil, err
	}
	spec, _ := crd["spec"].(schema)
	versions, _ := spec["versions"].([]any)
	if len(versions) == 0 {
		return nil, fmt.Errorf("no spec.versions")
	}
	for _, v := range versions {
		root, err := dig(v, "schema", "openAPIV3Schema")
		if err != nil {
			return nil, err
		}
		walk(root, boundInt32)
		template, err := dig(root, "properties", "spec", "properties", "template")
		if err != nil {
			return nil, err
		}
		own := template["description"] // ours: kept whole
		walk(template, shortenDescription)
		template["description"] = own
		podSpec, err := dig(template, "properties", "spec")
		if err != nil {
			return nil, err
		}
		if err := restrictPodSpec(podSpec); err != nil {
			return nil, err
		}
		labels, err := dig(template, "properties", "metadata", "properties", "labels")
		if err != nil {
			return nil, err
		}
		restrictLabels(labels)
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(in, []byte("---\n")) {
		out = append([]byte("---\n"), out...)
	}
	return out, nil
}

// dig follows keys from node down to a schema.
func dig(node any, keys ...string) (schema, error) {
	cur, ok := node.(schema)
	for i, k := range keys {
		if !ok {
			return nil, fmt.Errorf("%s is not an object", strings.Join(keys[:i], "."))
		}
		cur, ok = cur[k].(schema)
	}
	if !ok {
		return nil, fmt.Errorf("%s not found", strings.Join(keys, "."))
	}
	return cur, nil
}

// walk calls f on s and on every schema nested in it.
func walk(s schema, f func(schema)) {
	f(s)
	for _, key := range []string{"properties", "patternProperties", "definitions"} {
		if m, ok := s[key].(schema); ok {
			for _, sub := range m {
				if sub, ok := sub.(schema); ok {
					walk(sub, f)
				}
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties", "not"} {
		if sub, ok := s[key].(schema); ok {
			walk(sub, f)
		}
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := s[key].([]any); ok {
			for _, sub := range list {
				if sub, ok := sub.(schema); ok {
					walk(sub, f)
				}
			}
		}
	}
}

// quantityPattern is the pattern controller-gen gives a resource.Quantity,
// the other int-or-string: its number is not an int32 (memory: 4294967296).
const quantityPattern = `^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$`

// boundInt32 gives an int32 or an intstr.IntOrString the int32 range,
// keeping a tighter bound already there. (A minimum or maximum applies to
// numbers only, so the string of an int-or-string is unaffected.)
func boundInt32(s schema) {
	int32Field := s["type"] == "integer" && s["format"] == "int32"
	intOrString := s["x-kubernetes-int-or-string"] == true && s["pattern"] != quantityPattern
	if !int32Field && !intOrString {
		return
	}
	if m, ok := s["minimum"].(float64); !ok || m < math.MinInt32 {
		s["minimum"] = float64(math.MinInt32)
	}
	if m, ok := s["maximum"].(float64); !ok || m > math.MaxInt32 {
		s["maximum"] = float64(math.MaxInt32)
	}
}

// sentenceEnd is the end of a sentence: a period before a space and a
// capital (so "e.g. the" goes on), or the end of the text.
var sentenceEnd = regexp.MustCompile(`\.\s+[A-Z]`)

// shortenDescription keeps the first sentence of a description.
func shortenDescription(s schema) {
	d, ok := s["description"].(string)
	if !ok {
		return
	}
	d, _, _ = strings.Cut(d, "\n\n")
	d = strings.Join(strings.Fields(d), " ")
	if loc := sentenceEnd.FindStringIndex(d); loc != nil {
		d = d[:loc[0]+1]
	}
	s["description"] = d
}

// dns1123Label is what apps/v1 requires of a container name.
const dns1123Label = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`

// restrictPodSpec adds to the pod spec's schema what apps/v1 refuses.
func restrictPodSpec(podSpec schema) error {
	containers, err := dig(podSpec, "properties", "containers")
	if err != nil {
		return err
	}
	containers["minItems"] = float64(1)
	for _, list := range []string{"containers", "initContainers"} {
		if err := boundHostPortLists(podSpec, list); err != nil {
			return err
		}
		name, err := dig(podSpec, "properties", list, "items", "properties", "name")
		if err != nil {
			return err
		}
		// A pattern, not a CEL rule with a plainer message: the lists have
		// no maxItems, so the API server's cost estimate of a rule per name
		// is 22 times over its budget.
		name["maxLength"] = float64(63)
		name["pattern"] = dns1123Label
	}
	return nil
}

// labelValue is a label value as apps/v1 checks it (and as the selector's
// rule in api/v1alpha1/selector.go does).
const labelValue = `^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`

// restrictLabels makes the template's label values valid label values (a
// pod with others is refused at creation). Not the keys: a map's keys can
// only be checked by CEL, and even a bare k.matches(...) over this map (no
// maxProperties: apps/v1 sets no limit) is 1.3 times over the API server's
// cost budget.
func restrictLabels(labels schema) {
	value, _ := labels["additionalProperties"].(schema)
	value["maxLength"] = float64(63)
	value["pattern"] = labelValue
}

// Bounds on the lists the host-port rule (api/v1alpha1: maxSurge must be 0
// when the template uses host ports) walks, containers by ports. Without
// them the API server's static cost estimate of that rule is more than 100
// times over its budget and the CRD is refused. apps/v1 sets no such limit;
// these are far beyond what an agent pod holds.
const (
	maxContainers     = 64
	maxPortsContainer = 128
)

func boundHostPortLists(podSpec schema, list string) error {
	l, err := dig(podSpec, "properties", list)
	if err != nil {
		return err
	}
	l["maxItems"] = float64(maxContainers)
	ports, err := dig(l, "items", "properties", "ports")
	if err != nil {
		return err
	}
	ports["maxItems"] = float64(maxPortsContainer)
	return nil
}
