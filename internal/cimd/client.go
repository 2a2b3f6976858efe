package cimd

import (
	"context"
	"fmt"

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
// so callers answer invalid_client (or an error page) and never 503.
func (f *Fetcher) ResolveClient(ctx context.Context, clientID string) (store.Client, error) {
	doc, err := f.Get(ctx, clientID)
	if err != nil {
		return store.Client{}, fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	return doc.Client(), nil
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
