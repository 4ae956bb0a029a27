// Command image builds the manager's container image without a container
// engine: one layer holding the static manager binary and the two files a
// non-root distroless base has (/etc/passwd and /etc/group naming user
// 65532), on an empty base, so there is no shell or anything else to
// exploit. It writes an OCI image layout holding an image index with one
// image per platform, and optionally pushes that index to a registry.
//
//	image --out _output/image --tag v0.1.0 \
//	  --binary linux/amd64=_output/bin/linux_amd64/manager \
//	  --binary linux/arm64=_output/bin/linux_arm64/manager \
//	  [--push ghcr.io/nodeagentset/manager:v0.1.0]
//
// The output depends only on the binaries and the flags (file times and the
// image's creation time come from --source-date-epoch), so two builds of the
// same commit give the same digests.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user distroless calls "nonroot"; the chart and kustomize manifests
// run as it too.
const nonRoot = 65532

type binaries map[string]string // "os/arch" -> path

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(v string) error {
	platform, path, ok := strings.Cut(v, "=")
	if !ok || strings.Count(platform, "/") != 1 {
		return fmt.Errorf("want OS/ARCH=PATH, got %q", v)
	}
	b[platform] = path
	return nil
}

func main() {
	bins := binaries{}
	out := flag.String("out", "", "folder of the OCI image layout to write (replaced)")
	tag := flag.String("tag", "dev", "tag recorded in the layout (org.opencontainers.image.ref.name) and the image's version label")
	pushRef := flag.String("push", "", "also push the index to this reference (credentials from ~/.docker/config.json)")
	source := flag.String("source", "https://github.com/nodeagentset/nodeagentset", "org.opencontainers.image.source label")
	epoch := flag.Int64("source-date-epoch", 0, "time of the files and of the image, in seconds since 1970 (reproducible builds)")
	flag.Var(bins, "binary", "OS/ARCH=PATH of a static manager binary; repeat for each platform")
	flag.Parse()
	if *out == "" || len(bins) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	stamp := time.Unix(*epoch, 0).UTC()
	labels := map[string]string{
		"org.opencontainers.image.title":   "nodeagentset-manager",
		"org.opencontainers.image.version": *tag,
		"org.opencontainers.image.source":  *source,
	}
	idx, err := buildIndex(bins, stamp, labels)
	if err != nil {
		log.Fatal(err)
	}
	if err := writeLayout(*out, idx, *tag); err != nil {
		log.Fatal(err)
	}
	digest, err := idx.Digest()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s (index %s, %d platforms)\n", *out, digest, len(bins))
	if *pushRef != "" {
		ref, err := name.ParseReference(*pushRef)
		if err != nil {
			log.Fatal(err)
		}
		if err := push(ref, idx); err != nil {
			log.Fatalf("pushing %s: %v", ref, err)
		}
		fmt.Printf("pushed %s@%s\n", ref, digest)
	}
}

// push writes the index, its images and their blobs to the registry, with
// the credentials `docker login` (or crane auth login) stored.
func push(ref name.Reference, idx v1.ImageIndex) error {
	return remote.WriteIndex(ref, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain))
}

// buildIndex makes one image per platform, in a fixed order.
func buildIndex(bins binaries, stamp time.Time, labels map[string]string) (v1.ImageIndex, error) {
	platforms := make([]string, 0, len(bins))
	for p := range bins {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		osName, arch, _ := strings.Cut(p, "/")
		img, err := buildImage(bins[p], osName, arch, stamp, labels)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}},
		})
	}
	return idx, nil
}

func buildImage(binary, osName, arch string, stamp time.Time, labels map[string]string) (v1.Image, error) {
	manager, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	if !isStaticELF(manager) {
		return nil, fmt.Errorf("%s is not a static ELF binary (build it with CGO_ENABLED=0 GOOS=linux)", binary)
	}
	files, err := layerTar(manager, stamp)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: stamp},
			CreatedBy: "test/tools/image: the manager binary, /etc/passwd and /etc/group on an empty base",
		},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = osName, arch
	cfg.Created = v1.Time{Time: stamp}
	cfg.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", nonRoot, nonRoot),
		Entrypoint: []string{"/manager"},
		WorkingDir: "/",
		Env:        []string{"PATH=/"},
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cfg)
}

// layerTar is the image's only layer, uncompressed.
func layerTar(manager []byte, stamp time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		name string
		mode int64
		body []byte
	}{
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", nonRoot)},
		{"etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRoot, nonRoot)},
		{"manager", 0o755, manager},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: stamp, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// isStaticELF tells a static ELF executable from anything else: it has no
// PT_INTERP program header (the dynamic loader's path), which an empty base
// could not provide.
func isStaticELF(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil || f.Type != elf.ET_EXEC {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// writeLayout replaces dir with an OCI image layout whose index.json names
// idx with the tag.
func writeLayout(dir string, idx v1.ImageIndex, tag string) error {
	if dir == "" || dir == "/" {
		return errors.New("refusing to replace " + dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}
