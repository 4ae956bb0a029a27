package status

import (
	"encoding/json"
	"reflect"
	"strings"
	"unicode/utf8"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// MergePatch is a JSON merge patch that sets the whole status to st: every
// field of the status is in it, those st leaves empty as null, so the
// result does not depend on what the server held before. A merge patch
// merges objects field by field, so this holds inside nested objects
// too (status.rollout: a wave or a failure that is gone must be removed,
// not kept from the server's copy).
func MergePatch(st nasv1alpha1.NodeAgentSetStatus) ([]byte, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	fields := map[string]any{}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	nullMissing(fields, reflect.TypeFor[nasv1alpha1.NodeAgentSetStatus]())
	return json.Marshal(map[string]any{"status": fields})
}

// nullMissing sets every field of struct type t that fields lacks to null,
// and does the same inside the fields that are objects. Lists are replaced
// whole by a merge patch, so they need nothing.
func nullMissing(fields map[string]any, t reflect.Type) {
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		v, ok := fields[name]
		if !ok {
			fields[name] = nil
			continue
		}
		ft := t.Field(i).Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if nested, isObject := v.(map[string]any); isObject && ft.Kind() == reflect.Struct && ft.NumField() > 0 {
			nullMissing(nested, ft)
		}
	}
}

// Limits the API server puts on what the controller writes: a condition's
// message, and an event's note (longer notes are refused, and the event
// is lost).
const (
	MaxMessage   = 32768
	MaxEventNote = 1024
)

// Clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " …(truncated)"
	cut := max(0, n-len(mark))
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
