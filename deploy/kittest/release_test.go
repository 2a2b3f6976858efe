package kittest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// distDir is where scripts/test.sh's `goreleaser release --snapshot` left
// its output: $PASSGATE_DIST, or the repository's dist/.
func distDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PASSGATE_DIST")
	if dir == "" {
		dir = filepath.Join(repoRoot, "dist")
	}
	if _, err := os.Stat(filepath.Join(dir, "artifacts.json")); err != nil {
		msg := "no GoReleaser snapshot in " + dir + ": scripts/test.sh builds one (goreleaser release --snapshot --clean)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// artifact is an entry of GoReleaser's dist/artifacts.json.
type artifact struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Goos   string `json:"goos"`
	Goarch string `json:"goarch"`
	Type   string `json:"type"`
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestReleaseSnapshot checks what .goreleaser.yaml built: a static,
// version-stamped passgate for each of linux and darwin on amd64 and
// arm64, archived with the documents, listed with the right hashes in
// checksums.txt, and described by a CycloneDX SBOM that names every module
// the binary says it contains.
func TestReleaseSnapshot(t *testing.T) {
	dist := distDir(t)
	var meta struct {
		ProjectName string `json:"project_name"`
		Version     string `json:"version"`
	}
	b, err := os.ReadFile(filepath.Join(dist, "metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.ProjectName != "passgate" || meta.Version == "" {
		t.Fatalf("metadata.json: %+v", meta)
	}
	var arts []artifact
	b, err = os.ReadFile(filepath.Join(dist, "artifacts.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &arts); err != nil {
		t.Fatal(err)
	}
	// Paths in artifacts.json are relative to the directory goreleaser ran
	// in (the repository root), and start with dist/.
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dist, strings.TrimPrefix(filepath.ToSlash(p), "dist/"))
	}

	targets := []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"}
	byType := map[string]map[string]artifact{}
	for _, a := range arts {
		if byType[a.Type] == nil {
			byType[a.Type] = map[string]artifact{}
		}
		byType[a.Type][a.Goos+"/"+a.Goarch] = a
	}
	for _, typ := range []string{"Binary", "Archive"} {
		var got []string
		for k := range byType[typ] {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, targets) {
			t.Errorf("%s artifacts for %v, want %v", typ, got, targets)
		}
	}

	// checksums.txt: every archive, each hash right.
	sums := map[string]string{}
	f, err := os.Open(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Errorf("checksums.txt: malformed line %q", sc.Text())
			continue
		}
		sums[name] = sum
	}
	f.Close()
	for name, sum := range sums {
		if got := sha256File(t, filepath.Join(dist, name)); got != sum {
			t.Errorf("checksums.txt says %s is %s, it is %s", name, sum, got)
		}
	}

	for _, target := range targets {
		bin, ok := byType["Binary"][target]
		if !ok {
			continue
		}
		path := abs(bin.Path)
		t.Run(strings.ReplaceAll(target, "/", "_"), func(t *testing.T) {
			// Stamped and static: the build settings Go embeds.
			bi, err := buildinfo.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range bi.Settings {
				settings[s.Key] = s.Value
			}
			if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
				t.Errorf("build settings %v: want CGO_ENABLED=0 and -trimpath", settings)
			}
			// -trimpath keeps -ldflags out of the build settings; the
			// stamped string is in the binary, and the native one says it.
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(raw, []byte(meta.Version)) {
				t.Errorf("the binary does not contain its version %s", meta.Version)
			}
			if settings["GOOS"]+"/"+settings["GOARCH"] != target {
				t.Errorf("built for %s/%s", settings["GOOS"], settings["GOARCH"])
			}
			checkExecutable(t, path, target)
			if target == runtime.GOOS+"/"+runtime.GOARCH {
				out, err := exec.Command(path, "version").CombinedOutput()
				if err != nil || !strings.Contains(string(out), meta.Version) {
					t.Errorf("passgate version: %q, %v; want %s", out, err, meta.Version)
				}
			}

			// The archive: the same binary, and the documents.
			arc, ok := byType["Archive"][target]
			if !ok {
				t.Fatal("no archive")
			}
			if sums[arc.Name] == "" {
				t.Errorf("%s is not in checksums.txt", arc.Name)
			}
			files := untar(t, abs(arc.Path))
			for _, doc := range []string{"LICENSE", "README.md", "CHANGELOG.md", "SECURITY.md"} {
				if _, ok := files[doc]; !ok {
					t.Errorf("%s lacks %s", arc.Name, doc)
				}
			}
			if files["passgate"] != sha256File(t, path) {
				t.Errorf("%s's passgate is not the built binary", arc.Name)
			}

			// The SBOM lists every module the binary embeds, at its version.
			// (SBOM artifacts carry no platform: they are named for it.)
			var sbom *artifact
			for _, a := range arts {
				if a.Type == "SBOM" && strings.HasSuffix(a.Name, "_"+strings.ReplaceAll(target, "/", "_")+".cdx.json") {
					sbom = &a
				}
			}
			if sbom == nil {
				t.Fatal("no SBOM")
			}
			if sums[sbom.Name] == "" {
				t.Errorf("%s is not in checksums.txt", sbom.Name)
			}
			checkSBOM(t, abs(sbom.Path), bi, target)
		})
	}
}

// checkExecutable: a static executable for target's OS and CPU.
func checkExecutable(t *testing.T, path, target string) {
	t.Helper()
	goos, goarch, _ := strings.Cut(target, "/")
	switch goos {
	case "linux":
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Machine != want {
			t.Errorf("ELF machine %v, want %v", f.Machine, want)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("the binary needs a dynamic loader")
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("the binary links %v", libs)
		}
	case "darwin":
		f, err := macho.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		want := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]
		if f.Cpu != want {
			t.Errorf("Mach-O CPU %v, want %v", f.Cpu, want)
		}
		// Without cgo, Go links darwin binaries only against the system's
		// own libraries (libSystem, and libresolv for DNS), which every
		// macOS has: there is no static linking on darwin.
		libs, _ := f.ImportedLibraries()
		for _, l := range libs {
			if !strings.HasPrefix(l, "/usr/lib/libSystem.") && !strings.HasPrefix(l, "/usr/lib/libresolv.") &&
				!strings.HasPrefix(l, "/System/Library/Frameworks/") {
				t.Errorf("the binary links %s", l)
			}
		}
	}
}

// untar returns the regular files of a .tar.gz with their SHA-256.
func untar(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if fs.FileMode(h.Mode)&0o022 != 0 {
			t.Errorf("%s: %s is writable by group or others (%o)", path, h.Name, h.Mode)
		}
		hs := sha256.New()
		if _, err := io.Copy(hs, tr); err != nil {
			t.Fatal(err)
		}
		files[h.Name] = hex.EncodeToString(hs.Sum(nil))
	}
	return files
}

// checkSBOM: a CycloneDX document naming passgate and, by package URL,
// every module in the binary's build information.
func checkSBOM(t *testing.T, path string, bi *buildinfo.BuildInfo, target string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Name string `json:"name"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			PURL    string `json:"purl"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if doc.BOMFormat != "CycloneDX" || !strings.Contains(doc.Metadata.Component.Name, "passgate") {
		t.Errorf("%s: format %q, component %q", path, doc.BOMFormat, doc.Metadata.Component.Name)
	}
	goos, goarch, _ := strings.Cut(target, "/")
	have := map[string]bool{}
	for _, c := range doc.Components {
		have[c.Name+"@"+c.Version] = true
		if !strings.Contains(c.PURL, "goos="+goos) || !strings.Contains(c.PURL, "goarch="+goarch) {
			t.Errorf("%s: %s is not described for %s", filepath.Base(path), c.PURL, target)
		}
	}
	if len(bi.Deps) < 5 {
		t.Fatalf("the binary embeds only %d modules", len(bi.Deps))
	}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		if !have[d.Path+"@"+d.Version] {
			t.Errorf("%s: %s@%s, which the binary contains, is missing", filepath.Base(path), d.Path, d.Version)
		}
	}
}
