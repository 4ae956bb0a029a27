package main

import (
	"bytes"
	"os"
	"testing"
)

func TestShortenDescriptionKeepsTheFirstSentence(t *testing.T) {
	tests := map[string]string{
		"One line.": "One line.",
		"List of ports.\nNot specifying a port is fine.":                                    "List of ports.",
		"An empty term matches all objects (i.e.\nit's a no-op). A null term matches none.": "An empty term matches all objects (i.e. it's a no-op).",
		"Standard object's metadata.\nMore info: https://example.com/a.b":                   "Standard object's metadata.",
		"First paragraph\nwithout a period\n\nSecond paragraph.":                            "First paragraph without a period",
	}
	for in, want := range tests {
		s := schema{"description": in}
		shortenDescription(s)
		if s["description"] != want {
			t.Errorf("%q: got %q, want %q", in, s["description"], want)
		}
	}
}

// make verify-generated needs the same output for the same input, and a
// second pass must change nothing (the bounds and rules are added once).
func TestFinishIsStable(t *testing.T) {
	in, err := os.ReadFile("../../../config/crd/bases/nodeagentset.io_nodeagentsets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	once, err := finish(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(once, in) {
		t.Errorf("finishing the committed CRD changed it: run make manifests")
	}
	again, err := finish(once)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, once) {
		t.Errorf("a second pass changed the CRD")
	}
}
