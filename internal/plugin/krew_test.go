package plugin

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The krew manifest offers the plugin for every platform a release builds,
// each entry pointing at that platform's archive of this version, with a
// digest a release can fill in (64 hex digits) and the binary krew puts on
// PATH named as kubectl looks for it.
func TestKrewManifestCoversEveryReleasedPlatform(t *testing.T) {
	var manifest struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Version          string `json:"version"`
			Homepage         string `json:"homepage"`
			ShortDescription string `json:"shortDescription"`
			Description      string `json:"description"`
			Caveats          string `json:"caveats"`
			Platforms        []struct {
				Selector metav1.LabelSelector `json:"selector"`
				URI      string               `json:"uri"`
				SHA256   string               `json:"sha256"`
				Bin      string               `json:"bin"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join("..", "..", "config", "krew", "nodeagentset.yaml")), &manifest); err != nil {
		t.Fatal(err)
	}
	if manifest.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || manifest.Kind != "Plugin" ||
		manifest.Metadata.Name != "nodeagentset" || manifest.Spec.ShortDescription == "" {
		t.Errorf("not a krew Plugin named nodeagentset: %+v", manifest)
	}
	v := manifest.Spec.Version
	var platforms []string
	for _, p := range manifest.Spec.Platforms {
		os, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		platform := os + "/" + arch
		platforms = append(platforms, platform)
		ext, bin := "tar.gz", "kubectl-nodeagentset"
		if os == "windows" {
			ext, bin = "zip", "kubectl-nodeagentset.exe"
		}
		uri := fmt.Sprintf("https://github.com/nodeagentset/nodeagentset/releases/download/%s/kubectl-nodeagentset_%s_%s_%s.%s", v, v, os, arch, ext)
		if p.URI != uri || p.Bin != bin {
			t.Errorf("%s: uri %s bin %s, want %s and %s", platform, p.URI, p.Bin, uri, bin)
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(p.SHA256) {
			t.Errorf("%s: sha256 %q is not 64 hex digits", platform, p.SHA256)
		}
	}
	slices.Sort(platforms)
	if want := []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64"}; !slices.Equal(platforms, want) {
		t.Errorf("platforms %v, want %v", platforms, want)
	}
}
