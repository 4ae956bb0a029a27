// Command archive packs files, flat, into a .tar.gz or a .zip for a
// release (the kubectl plugin's archives, which krew unpacks). Every entry
// gets the same time (SOURCE_DATE_EPOCH, else 1970) and mode 0755, so an
// archive of the same files has the same sha256 on every build: the krew
// manifest names that digest.
//
//	archive OUT.tar.gz|OUT.zip FILE...
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: archive OUT.tar.gz|OUT.zip FILE...")
		os.Exit(2)
	}
	if err := pack(os.Args[1], os.Args[2:], stamp()); err != nil {
		fmt.Fprintln(os.Stderr, "archive:", err)
		os.Exit(1)
	}
}

func stamp() time.Time {
	sec, _ := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	return time.Unix(sec, 0).UTC()
}

func pack(out string, files []string, at time.Time) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	switch {
	case strings.HasSuffix(out, ".tar.gz"):
		return packTarGz(f, files, at)
	case strings.HasSuffix(out, ".zip"):
		return packZip(f, files, at)
	}
	return fmt.Errorf("%s: want .tar.gz or .zip", out)
}

func packTarGz(w io.Writer, files []string, at time.Time) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.Base(name), Mode: 0o755, Size: int64(len(b)), ModTime: at, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func packZip(w io.Writer, files []string, at time.Time) error {
	zw := zip.NewWriter(w)
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		h := &zip.FileHeader{Name: filepath.Base(name), Method: zip.Deflate, Modified: at}
		h.SetMode(0o755)
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := fw.Write(b); err != nil {
			return err
		}
	}
	return zw.Close()
}
