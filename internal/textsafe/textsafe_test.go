package textsafe

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestPrintable(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"ascii name", "alice@example.com", true},
		{"space", "Claude Code", true},
		{"accented letters", "Zoë Ørsted", true},
		{"cjk", "田中", true},
		{"emoji", "bot 🤖", true},
		{"empty", "", true},
		{"LF", "alice\n2026-01-01 login_success", false},
		{"CR", "alice\r", false},
		{"tab", "a\tb", false},
		{"NUL", "a\x00", false},
		{"ESC", "\x1b]0;owned\x07", false},
		{"DEL", "a\x7f", false},
		{"C1 CSI", "a\u009b31m", false},
		{"C1 NEL", "a\u0085b", false},
		{"bidi override", "evil\u202egnp.exe", false},
		{"zero width joiner", "ad\u200dmin", false},
		{"line separator", "a\u2028b", false},
		{"no-break space", "ad\u00a0min", false},
		{"private use", "a\ue000", false},
		{"invalid UTF-8", "a\xffb", false},
		{"replacement character itself", "a\ufffdb", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Printable(tt.in); got != tt.want {
				t.Errorf("Printable(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
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
