package main

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPushedIndexIsTheLayoutsIndex pushes what the layout holds to an
// in-memory registry (the code path of `make image PUSH=REF`) and pulls it
// back by tag: the same index digest, an image per platform, the config
// as built. The root module's TestImage checks the image itself.
func TestPushedIndexIsTheLayoutsIndex(t *testing.T) {
	dir := t.TempDir()
	bins := binaries{}
	for _, arch := range []string{"amd64", "arm64"} {
		path := filepath.Join(dir, arch, "manager")
		build := exec.CommandContext(t.Context(), "go", "build", "-o", path, "./testdata/hello")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		bins["linux/"+arch] = path
	}
	idx, err := buildIndex(bins, time.Unix(0, 0), map[string]string{"org.opencontainers.image.version": "v9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layout")
	if err := writeLayout(out, idx, "v9.9.9"); err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(reg.URL, "http://") + "/nodeagentset/manager:v9.9.9")
	if err != nil {
		t.Fatal(err)
	}
	if err := push(ref, idx); err != nil {
		t.Fatal(err)
	}

	pulled, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	got, _ := pulled.Digest()
	if got != want {
		t.Errorf("pulled index %s, pushed %s", got, want)
	}
	onDisk, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onDisk.IndexManifest()
	if err != nil || len(m.Manifests) != 1 || m.Manifests[0].Digest != want {
		t.Errorf("the layout's entry is not the pushed index: %+v, %v", m, err)
	}
	im, err := pulled.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d images in the index, want 2", len(im.Manifests))
	}
	for _, d := range im.Manifests {
		img, err := pulled.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != d.Platform.Architecture || cfg.Config.User != "65532:65532" || cfg.Config.Entrypoint[0] != "/manager" {
			t.Errorf("%s: config %s %+v", d.Platform, cfg.Architecture, cfg.Config)
		}
	}
}

// A file an empty base cannot run is refused before anything is built.
func TestRefusesWhatAnEmptyBaseCannotRun(t *testing.T) {
	bins := binaries{"linux/amd64": writeFile(t, "#!/bin/sh\necho hi\n")}
	if _, err := buildIndex(bins, time.Unix(0, 0), nil); err == nil || !strings.Contains(err.Error(), "not a static ELF") {
		t.Errorf("a shell script: got %v, want refused as not a static ELF binary", err)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manager")
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
