package deploy

import (
	"debug/elf"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/testing/e2etest"
)

// No Docker engine runs on these machines: the Dockerfile is checked as
// text, and its build command is run for real on the example server.

func readDockerfile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDockerfile(t *testing.T) {
	df := readDockerfile(t)
	// The final stage is the default target: passgate.
	stages := regexp.MustCompile(`(?m)^FROM (\S+) AS (\S+)$`).FindAllStringSubmatch(df, -1)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got stages %v", stages)
	}
	last := stages[len(stages)-1]
	// A stage FROM an earlier stage has that stage's image.
	image := map[string]string{}
	for _, st := range stages {
		image[st[2]] = st[1]
		if base, ok := image[st[1]]; ok {
			image[st[2]] = base
		}
	}
	if ref, _, _ := strings.Cut(image[last[2]], "@"); ref != "gcr.io/distroless/static-debian12:nonroot" || last[2] != "passgate" {
		t.Errorf("final stage = %s (%s) AS %s, want distroless static nonroot AS passgate", last[1], image[last[2]], last[2])
	}
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, want := range []string{
		"\nUSER nonroot\n",
		"\nEXPOSE 8080 9191 9464\n",
		`CMD ["/usr/local/bin/passgate", "healthcheck"]`,
		`ENTRYPOINT ["/usr/local/bin/passgate"]`,
	} {
		if !strings.Contains(final, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
	for _, want := range []string{
		`CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/passgate ./cmd/passgate`,
		`CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/mcp-server ./examples/mcp-server`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks the build command %q", want)
		}
	}
	// Health checks run a subcommand in exec form: distroless has no shell
	// and no curl.
	checks := regexp.MustCompile(`HEALTHCHECK[^\n]*\\\n[^\n]*`).FindAllString(df, -1)
	if len(checks) != 2 {
		t.Errorf("want a HEALTHCHECK per image, got %q", checks)
	}
	for _, hc := range checks {
		if !strings.Contains(hc, `CMD ["/usr/local/bin/`) {
			t.Errorf("HEALTHCHECK %q is not an exec-form subcommand", hc)
		}
	}
}

// pinnedImage is a base image reference pinned by tag and digest: the
// digest fixes the bytes, the tag says what they are.
var pinnedImage = regexp.MustCompile(`^([a-z0-9.\-/]+):([A-Za-z0-9._\-]+)@(sha256:[0-9a-f]{64})$`)

// TestDockerfilePinsAndLabels: every base image is pinned by digest (a
// floating tag would change every layer above it on the next build), the
// Go image is a patch release of the Go minor version the tests run, and each shipped image carries the OCI annotations a registry
// and a scanner read, its base.digest the one it is built FROM.
func TestDockerfilePinsAndLabels(t *testing.T) {
	df := readDockerfile(t)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$`).FindAllStringSubmatch(df, -1)
	if len(froms) == 0 {
		t.Fatal("no FROM lines")
	}
	stageNames := map[string]bool{}
	for _, f := range froms {
		if stageNames[f[1]] {
			continue // FROM an earlier stage
		}
		stageNames[f[2]] = true
		m := pinnedImage.FindStringSubmatch(f[1])
		if m == nil {
			t.Errorf("FROM %s: not pinned as name:tag@sha256:digest", f[1])
			continue
		}
		if m[2] == "latest" {
			t.Errorf("FROM %s: the tag must name a version", f[1])
		}
		if m[1] == "golang" {
			// A full patch release, of the Go minor version the tests run.
			v := regexp.MustCompile(`^(\d+\.\d+)\.\d+-`).FindStringSubmatch(m[2])
			if minor := regexp.MustCompile(`^go(\d+\.\d+)`).FindStringSubmatch(runtime.Version()); v == nil || minor == nil || v[1] != minor[1] {
				t.Errorf("FROM %s: want golang:X.Y.Z-… of the Go the tests run (%s)", f[1], runtime.Version())
			}
		}
	}

	// Each stage after a FROM of a non-build image ships, unless another
	// stage is built FROM it: its LABELs, with those of the stage it is
	// built FROM, which it inherits.
	stages := regexp.MustCompile(`(?m)^FROM `).Split(df, -1)[1:]
	index := map[string]int{}
	base := map[int]bool{}
	for i, f := range froms {
		if j, ok := index[f[1]]; ok {
			base[j] = true
		}
		index[f[2]] = i
	}
	inherited := make([]string, len(stages))
	for i, body := range stages {
		inherited[i] = body
		if j, ok := index[froms[i][1]]; ok && j < i {
			inherited[i] = inherited[j] + body
		}
	}
	shipped := 0
	for i := range stages {
		from, body := froms[i], inherited[i]
		if from[2] == "build" || base[i] {
			continue
		}
		shipped++
		if j, ok := index[from[1]]; ok && j < i {
			from = []string{from[0], froms[j][1], from[2]}
		}
		labels := map[string]string{}
		for _, m := range regexp.MustCompile(`(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"`).FindAllStringSubmatch(body, -1) {
			labels[m[1]] = m[2]
		}
		for _, k := range []string{"title", "description", "source", "licenses", "version", "revision", "base.name", "base.digest"} {
			if labels["org.opencontainers.image."+k] == "" {
				t.Errorf("stage %s lacks the label org.opencontainers.image.%s", from[2], k)
			}
		}
		m := pinnedImage.FindStringSubmatch(from[1])
		if m == nil {
			continue
		}
		if got, want := labels["org.opencontainers.image.base.digest"], m[3]; got != want {
			t.Errorf("stage %s: base.digest label %s, but FROM %s", from[2], got, want)
		}
		if got, want := labels["org.opencontainers.image.base.name"], m[1]+":"+m[2]; got != want {
			t.Errorf("stage %s: base.name label %s, but FROM %s", from[2], got, want)
		}
		if labels["org.opencontainers.image.version"] != "${VERSION}" || !strings.Contains(body, "ARG VERSION") {
			t.Errorf("stage %s: org.opencontainers.image.version is not the VERSION build argument", from[2])
		}
		if labels["org.opencontainers.image.licenses"] != "MIT" {
			t.Errorf("stage %s: licenses %q, LICENSE is MIT", from[2], labels["org.opencontainers.image.licenses"])
		}
	}
	if shipped != 2 {
		t.Errorf("want 2 shipped stages (mcp-server, passgate), got %d", shipped)
	}
}

// TestDockerfileBuildsStatic: the Dockerfile's build flags (which
// e2etest.BuildPackage uses too) produce a static binary, which a distroless static
// image can run.
func TestDockerfileBuildsStatic(t *testing.T) {
	f, err := elf.Open(e2etest.BuildPackage(t, "./examples/mcp-server"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}
}

// TestDockerignore: the build context keeps what `go build` needs and
// leaves out secrets.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines[l] = true
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd", "internal", "store", "extauthz", "oauthweb", "examples", "*.go"} {
		if lines[need] || lines[need+"/"] {
			t.Errorf(".dockerignore excludes %s, which the build needs", need)
		}
	}
	for _, secret := range []string{".env", "**/.env", ".git"} {
		if !lines[secret] {
			t.Errorf(".dockerignore does not exclude %s", secret)
		}
	}
}
