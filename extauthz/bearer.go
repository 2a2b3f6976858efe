package extauthz

// maxTokenLen bounds the credential we hash; passgate's tokens are 47 bytes
// and nothing legitimate comes near this.
const maxTokenLen = 4096

// parseBearer reads an Authorization header value. present reports whether
// Bearer credentials were offered at all (a missing header or another
// scheme such as Basic is "no credentials"); ok whether they are well
// formed: "Bearer" (any case), one or more spaces, then a token68 (RFC 7235
// section 2.1, RFC 6750 section 2.1) of at most maxTokenLen bytes. Proxies
// join repeated headers with commas, which a token68 cannot contain, so two
// Authorization headers are malformed too.
func parseBearer(h string) (tok string, present, ok bool) {
	const scheme = "bearer"
	if len(h) < len(scheme) || !asciiEqualFold(h[:len(scheme)], scheme) {
		return "", false, false
	}
	rest := h[len(scheme):]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		// "Bearerx…" is another scheme.
		return "", false, false
	}
	i := 0
	for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
		i++
	}
	tok = rest[i:]
	// Trailing whitespace is not part of the credential (HTTP trims OWS).
	j := len(tok)
	for j > 0 && (tok[j-1] == ' ' || tok[j-1] == '\t') {
		j--
	}
	tok = tok[:j]
	if tok == "" || len(tok) > maxTokenLen || !isToken68(tok) {
		return "", true, false
	}
	return tok, true, true
}

// isToken68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
func isToken68(s string) bool {
	i := 0
	for i < len(s) {
		b := s[i]
		if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
			b == '-' || b == '.' || b == '_' || b == '~' || b == '+' || b == '/' {
			i++
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

func asciiEqualFold(a, lower string) bool {
	if len(a) != len(lower) {
		return false
	}
	for i := 0; i < len(a); i++ {
		b := a[i]
		if b >= 'A' && b <= 'Z' {
			b += 'a' - 'A'
		}
		if b != lower[i] {
			return false
		}
	}
	return true
}
