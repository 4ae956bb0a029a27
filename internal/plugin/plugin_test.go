package plugin

import (
	"strings"
	"testing"
)

func TestLineDiffShowsRemovalsBeforeAdditions(t *testing.T) {
	got := lineDiff("a\nimage: 1\nc\n", "a\nimage: 2\nc\n")
	want := "  a\n- image: 1\n+ image: 2\n  c\n"
	if got != want {
		t.Errorf("lineDiff =\n%s\nwant\n%s", got, want)
	}
}

func TestHelpReadsLikeKubectl(t *testing.T) {
	cmd := NewCommand(testStreams())
	cmd.SetArgs([]string{"rollout", "undo", "--help"})
	var out strings.Builder
	cmd.SetOut(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kubectl nodeagentset rollout undo NAME") {
		t.Errorf("usage line does not read `kubectl nodeagentset rollout undo NAME`:\n%s", out.String())
	}
}
