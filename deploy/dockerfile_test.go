package deploy

import (
	"debug/elf"
	"os"
	"regexp"
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
	if last[1] != "gcr.io/distroless/static-debian12:nonroot" || last[2] != "passgate" {
		t.Errorf("final stage = %s AS %s, want distroless static nonroot AS passgate", last[1], last[2])
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
