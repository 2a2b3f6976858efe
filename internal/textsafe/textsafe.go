// Package textsafe is the one rule for text that people choose and
// operators later read: usernames, client identifiers and anything else
// passgate records and prints. Printable says whether a value may be
// accepted as an identifier; Escape makes any value safe to print on a
// terminal or in a tab-separated table.
//
// The threat is output injection: a username or client_id carrying CR/LF
// forges rows in `passgate audit`, and ESC or C1 (CSI, OSC) sequences drive
// the operator's terminal (retitle it, rewrite the screen, hide lines).
package textsafe

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable reports whether s is valid UTF-8 made only of printable
// characters: no C0 controls (tab, CR, LF, ESC included), no DEL, no C1
// controls, no format characters such as bidirectional overrides (U+202E
// flips how the rest of a line reads) or zero-width joiners, no line or
// paragraph separators, no private-use or unassigned code points. The
// ASCII space is allowed; other spaces are not (they hide in a column).
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !printableRune(r) {
			return false
		}
	}
	return true
}

// printableRune is unicode.IsPrint (letters, marks, numbers, punctuation,
// symbols and U+0020) minus what it already excludes: controls (Cc),
// format (Cf), separators other than the space (Zl, Zp, Zs), private use,
// surrogates and unassigned code points.
func printableRune(r rune) bool {
	return unicode.IsPrint(r)
}

// Escape returns s with every byte or character that Printable refuses
// written as a Go escape (\n, \x1b, \u202e, and \xff for a byte of invalid
// UTF-8), and backslashes doubled so an escape in the input cannot pass for
// one made here. A printable s comes back unchanged apart from backslashes.
func Escape(s string) string {
	if Printable(s) && !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case r == '\\':
			b.WriteString(`\\`)
		case printableRune(r):
			b.WriteString(s[i : i+size])
		default:
			// QuoteRune gives '\n', '\x1b', '\u202e'; drop the quotes.
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}
