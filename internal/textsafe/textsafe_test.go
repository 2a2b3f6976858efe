package textsafe

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/passgate/passgate/internal/testing/validtest"
)

func TestPrintable(t *testing.T) {
	validtest.Check(t, "Printable", validtest.Bool(Printable), validtest.Cases[string]{
		Accept: []string{
			"alice@example.com",
			"Claude Code",
			"Zoë Ørsted",
			"田中",
			"bot 🤖",
			"",
			"a\ufffdb", // the replacement character itself
		},
		Refuse: []string{
			"alice\n2026-01-01 login_success",
			"alice\r",
			"a\tb",
			"a\x00",
			"\x1b]0;owned\x07",
			"a\x7f",
			"a\u009b31m",        // C1 CSI
			"a\u0085b",          // C1 NEL
			"evil\u202egnp.exe", // bidi override
			"ad\u200dmin",       // zero width joiner
			"a\u2028b",          // line separator
			"ad\u00a0min",       // no-break space
			"a\ue000",           // private use
			"a\xffb",            // invalid UTF-8
		},
	})
}

func TestEscape(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"printable unchanged", "alice@example.com", "alice@example.com"},
		{"unicode unchanged", "Zoë 田中", "Zoë 田中"},
		{"newline", "alice\nforged", `alice\nforged`},
		{"CR and tab", "a\r\tb", `a\r\tb`},
		{"ESC sequence", "\x1b[2J", `\x1b[2J`},
		{"DEL", "\x7f", `\x7f`},
		{"C1", "\u009b", `\u009b`},
		{"bidi", "a\u202eb", `a\u202eb`},
		{"invalid byte", "a\xffb", `a\xffb`},
		{"backslash doubled", `a\nb`, `a\\nb`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(Escape(tt.in), tt.want); diff != "" {
				t.Errorf("Escape(%q) (-got +want):\n%s", tt.in, diff)
			}
		})
	}
}

// FuzzEscape: whatever goes in, what comes out is printable (so it cannot
// break a row or reach the terminal as a control) and distinct inputs stay
// distinct.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "alice", "a\nb", "\x1b[31m", "\xff", `\x1b`, "\u202e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if !Printable(e) || !utf8.ValidString(e) {
			t.Fatalf("Escape(%q) = %q is not printable", s, e)
		}
		if Printable(s) && !strings.Contains(s, `\`) && e != s {
			t.Fatalf("Escape changed printable %q to %q", s, e)
		}
		if Escape(s+"x") == e {
			t.Fatalf("Escape is not injective around %q", s)
		}
	})
}
