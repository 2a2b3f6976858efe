package oauthweb

import (
	"errors"
	"net/http"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/store"
)

// serveApps lists the clients the user approved, with the resources and
// scopes of each approval, the last use of each client, and a revoke
// button per client (revoking covers every resource).
func (s *Server) serveApps(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r, s.prefix+"/apps")
	if !ok {
		return
	}
	s.showApps(w, r, sess, "")
}

func (s *Server) showApps(w http.ResponseWriter, r *http.Request, sess store.Session, revoked string) {
	ctx := r.Context()
	consents, err := s.cfg.Store.ListConsents(ctx, sess.Username)
	if err != nil {
		s.unavailable(w, r, "list consents", err)
		return
	}
	// One row per client, listing its approvals per resource; consents
	// come newest first, so the first one of a client is its latest.
	var rows []appRow
	index := map[string]int{}
	for _, c := range consents {
		i, ok := index[c.ClientID]
		if !ok {
			row := appRow{ClientID: c.ClientID, Name: c.ClientID, ApprovedAt: c.UpdatedAt}
			if cl, err := s.lookupClient(ctx, c.ClientID); err == nil {
				row.Name = clientName(cl)
				row.LastUsedAt = cl.LastUsedAt
			}
			i = len(rows)
			index[c.ClientID] = i
			rows = append(rows, row)
		}
		row := &rows[i]
		row.Grants = append(row.Grants, grantRow{Resource: c.Resource, Scope: c.Scope, ApprovedAt: c.UpdatedAt})
		have, _ := oauth.ParseScope(row.Scope)
		add, _ := oauth.ParseScope(c.Scope)
		row.Scope = oauth.JoinScope(oauth.ScopeUnion(have, add))
	}
	s.render(w, r, http.StatusOK, "apps", page{Title: "Connected apps", Data: appsData{
		Username: sess.Username, Apps: rows, CSRF: sess.CSRFToken,
		RevokeURL: s.endpoints.apps + "/revoke", LogoutURL: s.endpoints.logout, RevokedName: revoked,
		AccountURL: s.endpoints.account,
	}})
}

// serveAppRevoke removes the user's consent for a client and revokes all
// of the user's tokens for it.
func (s *Server) serveAppRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	sess, ok := s.formSession(w, r, func(w http.ResponseWriter, r *http.Request) (store.Session, bool) {
		return s.requireSession(w, r, s.prefix+"/apps")
	}, "apps", "The form expired. Reload the page and try again.")
	if !ok {
		return
	}
	clientID := r.PostForm.Get("client_id")
	ev := s.event(r, store.EventTokenRevoked, true)
	ev.Username, ev.ClientID, ev.Error = sess.Username, auditClientID(clientID), "app_revoked_by_user"
	ev = s.cfg.Audit.Stamp(ev)
	_, err := s.cfg.Store.DeleteConsent(ctx, sess.Username, clientID, s.now(), &ev)
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.Redirect(w, r, s.endpoints.apps, http.StatusSeeOther)
		return
	case err != nil:
		s.unavailable(w, r, "delete consent", err)
		return
	}
	s.cfg.Audit.Committed(ev)
	http.Redirect(w, r, s.endpoints.apps, http.StatusSeeOther)
}
