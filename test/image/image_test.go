// Package image tests `make image`: it builds the manager's image for the
// host's platform, as an OCI image layout, with no container engine, and
// reads it back with the standard library alone (not with the library that
// wrote it), as a registry or a runtime would.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// maxCompressed bounds each platform's image as pulled (the layers,
// compressed); the manager alone is about 20 MB of it.
const maxCompressed = 32 << 20

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"` // an index
	Config    descriptor   `json:"config"`    // an image
	Layers    []descriptor `json:"layers"`
}

type imageConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Config       struct {
		User       string   `json:"User"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
	} `json:"config"`
}

func TestImage(t *testing.T) {
	platform := "linux/" + runtime.GOARCH
	first := makeImage(t, platform)
	index := readIndex(t, first)
	if len(index.Manifests) != 1 {
		t.Fatalf("index: %d images, want 1 (%s)", len(index.Manifests), platform)
	}
	for _, d := range index.Manifests {
		if d.Platform == nil || d.Platform.OS+"/"+d.Platform.Architecture != platform {
			t.Errorf("index entry %s: platform %+v, want %s", d.Digest, d.Platform, platform)
		}
		checkImage(t, first, d, platform)
	}
	// The same commit built again is the same image, to the byte.
	second := makeImage(t, platform)
	if a, b := readFile(t, first, "index.json"), readFile(t, second, "index.json"); !bytes.Equal(a, b) {
		t.Errorf("two builds differ:\n%s\n%s", a, b)
	}
}

// makeImage runs `make image` for one platform into a new folder.
func makeImage(t *testing.T, platform string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "image")
	cmd := exec.CommandContext(t.Context(), "make", "--no-print-directory", "-C", "../..", "image",
		"PLATFORMS="+platform, "IMAGE_DIR="+dir, "VERSION=v0.0.0-test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image:\n%s", out)
	return dir
}

// readIndex follows index.json to the image index tagged by VERSION.
func readIndex(t *testing.T, dir string) manifest {
	t.Helper()
	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}
	decode(t, readFile(t, dir, "oci-layout"), &layout)
	if layout.Version != "1.0.0" {
		t.Errorf("oci-layout: version %q", layout.Version)
	}
	var top manifest
	decode(t, readFile(t, dir, "index.json"), &top)
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json: %d entries, want 1", len(top.Manifests))
	}
	d := top.Manifests[0]
	if tag := d.Annotations["org.opencontainers.image.ref.name"]; tag != "v0.0.0-test" {
		t.Errorf("index.json: tag %q, want v0.0.0-test", tag)
	}
	if d.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("index.json: %s, want an image index (one image per platform)", d.MediaType)
	}
	var index manifest
	decode(t, blob(t, dir, d), &index)
	return index
}

// checkImage reads one platform's image: its config (user, entrypoint)
// and every file of its layers (no shell, a static manager).
func checkImage(t *testing.T, dir string, d descriptor, platform string) {
	t.Helper()
	var m manifest
	decode(t, blob(t, dir, d), &m)
	var cfg imageConfig
	decode(t, blob(t, dir, m.Config), &cfg)
	t.Logf("%s: config %+v", platform, cfg.Config)
	if cfg.OS+"/"+cfg.Architecture != platform {
		t.Errorf("config platform %s/%s, want %s", cfg.OS, cfg.Architecture, platform)
	}
	user, _, _ := strings.Cut(cfg.Config.User, ":")
	if user == "" || user == "0" || user == "root" {
		t.Errorf("user %q: the image would run as root", cfg.Config.User)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/manager" || len(cfg.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q, cmd %q: want the manager alone", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	var compressed int64
	files := map[string]*tar.Header{}
	var manager []byte
	for _, l := range m.Layers {
		compressed += l.Size
		gz, err := gzip.NewReader(bytes.NewReader(blob(t, dir, l)))
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		tr := tar.NewReader(gz)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			name := path.Clean("/" + h.Name)
			files[name] = h
			if name == "/manager" {
				if manager, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Logf("%s: %d layer(s), %.1f MiB compressed, files %v", platform, len(m.Layers), float64(compressed)/(1<<20), names(files))
	if compressed > maxCompressed {
		t.Errorf("layers are %d bytes compressed, more than %d", compressed, maxCompressed)
	}
	for name := range files {
		if base := path.Base(name); base == "sh" || base == "bash" || base == "busybox" || strings.HasPrefix(name, "/bin/") {
			t.Errorf("the image holds %s: a shell, or a place for one", name)
		}
	}
	if h := files["/manager"]; h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("no executable /manager in the image")
	}
	if !staticELF(manager, runtime.GOARCH) {
		t.Errorf("/manager is not a static ELF executable for %s", runtime.GOARCH)
	}
}

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// staticELF: an ELF executable for arch with no dynamic loader, which an
// empty base could not provide.
func staticELF(b []byte, arch string) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil || f.Machine != elfMachine[arch] {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// blob reads a blob and checks it against its descriptor's digest and size.
func blob(t *testing.T, dir string, d descriptor) []byte {
	t.Helper()
	algo, hexDigest, _ := strings.Cut(d.Digest, ":")
	if algo != "sha256" {
		t.Fatalf("digest %q: want sha256", d.Digest)
	}
	b := readFile(t, dir, filepath.Join("blobs", "sha256", hexDigest))
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != hexDigest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: content does not match its descriptor (%d bytes, want %d)", d.Digest, len(b), d.Size)
	}
	return b
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode(t *testing.T, b []byte, into any) {
	t.Helper()
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}

func names(files map[string]*tar.Header) string {
	var s []string
	for n, h := range files {
		s = append(s, fmt.Sprintf("%s (%o)", n, h.Mode))
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}
