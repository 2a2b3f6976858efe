package extauthz

import (
	"strings"
	"testing"

	"github.com/passgate/passgate/internal/resource"
)

// TestIdentityHeaderWithUnderscoreIsRefused: CGI, WSGI, PHP and Rack read
// X_Passgate_User and X-Passgate-User as the same HTTP_X_PASSGATE_USER, so an
// identity header named with underscores could be forged by a client header
// with dashes that the proxy does not strip.
func TestIdentityHeaderWithUnderscoreIsRefused(t *testing.T) {
	db := openSQLite(t)
	for _, name := range []string{"X_Passgate_User", "X.Passgate.User", "X-Passgate-User:", "X Passgate"} {
		t.Run(name, func(t *testing.T) {
			_, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: db, UserHeader: name})
			if err == nil || !strings.Contains(err.Error(), "identity header") {
				t.Errorf("NewChecker(UserHeader %q) = %v, want an identity header error", name, err)
			}
		})
	}
	if _, err := NewChecker(Config{Resources: resource.MustParseAll(mcpURL), Store: db, UserHeader: "X-Remote-User-2"}); err != nil {
		t.Errorf("NewChecker(UserHeader X-Remote-User-2) = %v, want nil", err)
	}
}
