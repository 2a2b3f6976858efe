package deploy

import (
	"os"
	"strings"
	"testing"
)

// TestCaddyfileVariablesDocumented: every environment variable the shipped
// Caddyfile uses is described in its header comment.
func TestCaddyfileVariablesDocumented(t *testing.T) {
	text, err := os.ReadFile(caddyfilePath)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := caddyfileVars(string(text))
	if len(names) == 0 {
		t.Fatal("no variables found")
	}
	for _, name := range names {
		if !strings.Contains(string(text), "#   "+name+" ") {
			t.Errorf("variable %s is not documented in the header", name)
		}
	}
}

// TestCheckCaddyfileEnv: the renderer refuses a missing variable (Caddy
// would silently make it empty) and an unused one (a typo), and accepts a
// missing one that has a default.
func TestCheckCaddyfileEnv(t *testing.T) {
	const text = "# {$IN_COMMENT}\n{\n\tadmin {$ADMIN:localhost:2019}\n}\n{$SITE} {\n\treverse_proxy {$UP}\n}\n"
	if err := checkCaddyfileEnv(text, map[string]string{"SITE": "a", "UP": "b"}); err != nil {
		t.Errorf("all given: %v", err)
	}
	if err := checkCaddyfileEnv(text, map[string]string{"SITE": "a"}); err == nil || !strings.Contains(err.Error(), "UP is used but not given") {
		t.Errorf("missing UP: %v", err)
	}
	if err := checkCaddyfileEnv(text, map[string]string{"SITE": "a", "UP": "b", "TYPO": "c"}); err == nil || !strings.Contains(err.Error(), "TYPO is given but not used") {
		t.Errorf("extra TYPO: %v", err)
	}
}
