package gitops

import (
	"path/filepath"
	"strings"
	"testing"
)

// Every captured (and hand-made) state gets the answer Want names, from
// both Argo CD's Lua check and kstatus; the two agree on each state.
func TestArgoCDAndKStatusAgreeOnEveryState(t *testing.T) {
	for state, want := range Want {
		t.Run(state, func(t *testing.T) {
			obj, err := Load(state)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Evaluate(obj)
			if err != nil {
				t.Fatal(err)
			}
			if got.Argo != want.Argo || got.KStatus != want.KStatus {
				t.Fatalf("Argo CD %s (%q), kstatus %s; want %s and %s", got.Argo, got.ArgoMessage, got.KStatus, want.Argo, want.KStatus)
			}
			if got.ArgoMessage == "" {
				t.Fatal("Argo CD message is empty")
			}
		})
	}
}

// A fixture nobody checks is a state nobody reads: each one has a Want.
func TestEveryFixtureHasAnAnswer(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(Want) {
		t.Errorf("%d fixtures for %d states", len(files), len(Want))
	}
	for _, f := range files {
		if _, ok := Want[strings.TrimSuffix(filepath.Base(f), ".json")]; !ok {
			t.Errorf("%s has no entry in Want", f)
		}
	}
}

// A set the controller has not reported on yet is Progressing, not
// Healthy.
func TestArgoCDCheckOfASetWithoutStatus(t *testing.T) {
	got, _, err := ArgoHealth(map[string]any{"metadata": map[string]any{"name": "x", "generation": int64(1)}})
	if err != nil {
		t.Fatal(err)
	}
	if got != "Progressing" {
		t.Fatalf("a set without status is %s, want Progressing", got)
	}
}
