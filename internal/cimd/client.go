package cimd

import (
	"context"
	"errors"
	"strings"

	"github.com/passgate/passgate/store"
)

// SourceMetadataDocument is the store.Client Source of a client resolved
// from a Client ID Metadata Document. Such clients are never written to
// the store by this package.
const SourceMetadataDocument = "metadata_document"

// ResolveClient is Get shaped for oauthweb.Config.ResolveClient: the
// document as a public store.Client (Source SourceMetadataDocument, no
// secret, auth method "none"). Every failure, including a fetch that
// could not complete, wraps store.ErrNotFound alongside the cimd error,
// so callers answer invalid_client (or an error page) and never 503. The
// error has a PublicReason method: what the user (and the client's
// developer) may be told went wrong, naming the rule broken.
func (f *Fetcher) ResolveClient(ctx context.Context, clientID string) (store.Client, error) {
	doc, err := f.Get(ctx, clientID)
	if err != nil {
		return store.Client{}, &resolveError{err}
	}
	return doc.Client(), nil
}

// resolveError is ResolveClient's error: store.ErrNotFound and the cimd
// error.
type resolveError struct{ err error }

func (e *resolveError) Error() string   { return store.ErrNotFound.Error() + ": " + e.err.Error() }
func (e *resolveError) Unwrap() []error { return []error{store.ErrNotFound, e.err} }

// PublicReason says what was wrong with the document without anything
// from the network: for a document that breaks a rule, the rule (Parse's
// and fetch's texts never quote the document); otherwise only that it
// could not be fetched or that its host is not allowed, since dial errors
// can name internal addresses.
func (e *resolveError) PublicReason() string {
	switch {
	case errors.Is(e.err, ErrInvalidDocument):
		msg := e.err.Error()
		if _, after, ok := strings.Cut(msg, ErrInvalidDocument.Error()+": "); ok {
			return after
		}
		return msg
	case errors.Is(e.err, ErrInvalidURL):
		return "the client_id is not a valid client identifier URL"
	case errors.Is(e.err, ErrBlocked):
		return "its host is not one passgate may connect to"
	default:
		return "it could not be fetched"
	}
}

// Client converts d to a public store.Client.
func (d Document) Client() store.Client {
	return store.Client{
		ID:                      d.ClientID,
		Name:                    d.ClientName,
		RedirectURIs:            append([]string(nil), d.RedirectURIs...),
		TokenEndpointAuthMethod: d.TokenEndpointAuthMethod,
		GrantTypes:              append([]string(nil), d.GrantTypes...),
		Scope:                   d.Scope,
		Source:                  SourceMetadataDocument,
		ClientURI:               d.ClientURI,
		LogoURI:                 d.LogoURI,
	}
}
