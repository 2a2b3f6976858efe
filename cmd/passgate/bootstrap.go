package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/passgate/passgate/internal/oauth"
	"github.com/passgate/passgate/internal/passwd"
	"github.com/passgate/passgate/internal/textsafe"
	"github.com/passgate/passgate/internal/token"
	"github.com/passgate/passgate/store"
)

// seedPasswordSetting names the setting that holds the SHA-256 of the
// $OAUTH_PASSWORD_HASH passgate last applied (a digest, so the settings
// table holds no password hash).
const seedPasswordSetting = "seed_password_hash_sha256"

// applySeedPassword makes $OAUTH_PASSWORD_HASH the password of user admin,
// but only when the hash changed since passgate last applied it: a
// password set since with `passgate user passwd admin` survives restarts
// (the seed reverted it at every start, bringing a leaked old password
// back). Applying a changed hash ends admin's sessions and revokes their
// tokens like any password change, and says so in the log.
func applySeedPassword(ctx context.Context, st store.Store, hash string, now time.Time, logger *slog.Logger) error {
	sum := sha256.Sum256([]byte(hash))
	digest := hex.EncodeToString(sum[:])
	applied, err := st.GetSetting(ctx, seedPasswordSetting)
	switch {
	case err == nil && applied == digest:
		return nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("read the applied $OAUTH_PASSWORD_HASH: %w", err)
	}
	neverApplied := err != nil
	u, err := st.GetUser(ctx, "admin")
	switch {
	case errors.Is(err, store.ErrNotFound):
		if err := st.CreateUser(ctx, store.User{Username: "admin", PasswordHash: hash, CreatedAt: now, UpdatedAt: now}); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			return fmt.Errorf("create admin from $OAUTH_PASSWORD_HASH: %w", err)
		}
		logger.Info("created user admin from $OAUTH_PASSWORD_HASH")
	case err != nil:
		return fmt.Errorf("get admin: %w", err)
	case u.PasswordHash == hash:
		// Already in place (applied by a passgate that did not record
		// it): record it, change nothing.
	case neverApplied:
		// Upgrading from a passgate that re-applied the hash at every
		// start without recording it: admin's password differs, so it
		// was changed after the last start, and reverting it is the bug
		// this function exists to stop.
		logger.Warn("kept the current password of user admin: it differs from $OAUTH_PASSWORD_HASH and passgate has no record of applying that hash; to apply it, set a freshly made hash (passgate hash-password) or use passgate user passwd admin")
	default:
		ev := store.AuditEvent{Event: store.EventPasswordChanged, Success: true, IP: "config", Username: "admin", Error: "OAUTH_PASSWORD_HASH", CreatedAt: now}
		revoked, err := st.SetPassword(ctx, "admin", hash, now, &ev)
		if err != nil {
			return fmt.Errorf("update admin from $OAUTH_PASSWORD_HASH: %w", err)
		}
		logger.Warn("applied a changed $OAUTH_PASSWORD_HASH to user admin: ended their sessions and revoked their tokens", "revoked_tokens", len(revoked))
	}
	if err := st.PutSetting(ctx, seedPasswordSetting, digest, now); err != nil {
		return fmt.Errorf("record the applied $OAUTH_PASSWORD_HASH: %w", err)
	}
	return nil
}

// bootstrap applies the seed's environment (admin password hash, the
// pre-registered client) and, when there is no user at all, creates user
// admin with a random password that it prints once to out. Hashes have
// bcrypt cost cost.
func bootstrap(ctx context.Context, st store.Store, c *Config, cost int, out io.Writer, logger *slog.Logger) error {
	now := time.Now()
	if c.SeedPasswordHash != "" {
		if err := applySeedPassword(ctx, st, c.SeedPasswordHash, now, logger); err != nil {
			return err
		}
	}
	if err := createFirstAdmin(ctx, st, now, cost, out); err != nil {
		return err
	}
	if c.SeedClientID != "" {
		if err := applySeedClient(ctx, st, c, now, cost, logger); err != nil {
			return err
		}
	}
	return warnUnsafeRedirects(ctx, st, logger)
}

// warnUnsafeRedirects names, once at start, the pre-registered clients
// whose stored redirect URIs today's rules refuse (stored by an older
// passgate or by hand). /oauth/authorize refuses those URIs at every use;
// the warning tells the operator why that client fails and what to fix.
func warnUnsafeRedirects(ctx context.Context, st store.Store, logger *slog.Logger) error {
	clients, err := st.ListClients(ctx)
	if err != nil {
		return fmt.Errorf("list clients: %w", err)
	}
	for _, cl := range clients {
		if cl.Source != store.ClientStatic {
			continue
		}
		for _, u := range cl.RedirectURIs {
			if err := oauth.ValidateRedirectURI(u, oauth.PrivateSchemesAny); err != nil {
				logger.Warn("a pre-registered client has a redirect URI passgate refuses: /oauth/authorize will not redirect there; fix it with `passgate client remove` and `client add`",
					"client_id", textsafe.Escape(cl.ID), "redirect_uri", textsafe.Escape(u), "err", err)
			}
		}
	}
	return nil
}

// createFirstAdmin creates user admin with a random password, printed once
// to out, when there is no user at all.
func createFirstAdmin(ctx context.Context, st store.Store, now time.Time, cost int, out io.Writer) error {
	users, err := st.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	if len(users) > 0 {
		return nil
	}
	pw := token.New("")[:24]
	hash, err := passwd.Hash(pw, cost)
	if err != nil {
		return err
	}
	err = st.CreateUser(ctx, store.User{Username: "admin", PasswordHash: hash, CreatedAt: now, UpdatedAt: now})
	switch {
	case errors.Is(err, store.ErrAlreadyExists):
		// Another replica bootstrapped at the same moment.
	case err != nil:
		return fmt.Errorf("create admin: %w", err)
	default:
		// Printed, never logged: logs are shipped and kept.
		fmt.Fprintf(out, "\n  passgate created user \"admin\" with password: %s\n  It is shown only this once; change it with `passgate user passwd admin`.\n\n", pw)
	}
	return nil
}

// applySeedClient makes $OAUTH_CLIENT_ID, $OAUTH_CLIENT_SECRET and
// $PASSGATE_CLIENT_REDIRECT_URIS a static client, replacing a stored one
// whose secret or redirect URIs differ.
func applySeedClient(ctx context.Context, st store.Store, c *Config, now time.Time, cost int, logger *slog.Logger) error {
	secretHash, err := passwd.Hash(c.SeedClientSecret, cost)
	if err != nil {
		return fmt.Errorf("hash $OAUTH_CLIENT_SECRET: %w", err)
	}
	want := store.Client{
		ID: c.SeedClientID, Name: c.SeedClientID, SecretHash: secretHash,
		RedirectURIs: c.SeedRedirectURIs, TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes: []string{"authorization_code", "refresh_token"}, Source: store.ClientStatic, CreatedAt: now,
	}
	cur, err := st.GetClient(ctx, c.SeedClientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("get seed client: %w", err)
	case passwd.Verify(cur.SecretHash, c.SeedClientSecret) == nil && slices.Equal(cur.RedirectURIs, want.RedirectURIs):
		return nil
	default:
		if err := st.DeleteClient(ctx, c.SeedClientID, now); err != nil {
			return fmt.Errorf("replace seed client: %w", err)
		}
	}
	if err := st.CreateClient(ctx, want); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
		return fmt.Errorf("create seed client: %w", err)
	}
	logger.Info("pre-registered client from $OAUTH_CLIENT_ID", "client_id", c.SeedClientID, "redirect_uris", c.SeedRedirectURIs)
	return nil
}
