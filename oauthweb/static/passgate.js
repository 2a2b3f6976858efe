// passgate.js: passkeys (WebAuthn) on passgate's pages, and nothing else.
// It is the only script the pages load, and the Content-Security-Policy
// lets it fetch only passgate's /webauthn/ ceremonies. Everything except
// passkeys works without it: the passkey parts of a page stay hidden
// until this script finds a browser that can use them.
'use strict';
(() => {
  const PKC = window.PublicKeyCredential;
  if (!PKC || !PKC.parseRequestOptionsFromJSON || !PKC.parseCreationOptionsFromJSON) return;

  // post sends a ceremony step and returns its JSON, or throws an Error
  // with the server's message for the person.
  async function post(url, body, csrf) {
    const headers = { 'Content-Type': 'application/json' };
    if (csrf) headers['X-CSRF-Token'] = csrf;
    const resp = await fetch(url, {
      method: 'POST', headers, body: JSON.stringify(body || {}),
      credentials: 'same-origin', cache: 'no-store', redirect: 'error',
    });
    let data = {};
    try { data = await resp.json(); } catch (e) { /* not JSON */ }
    if (!resp.ok) throw new Error(data.error || 'Something went wrong. Try again.');
    return data;
  }

  function explain(e) {
    if (e.name === 'NotAllowedError') return 'The passkey request was cancelled or timed out.';
    if (e.name === 'InvalidStateError') return 'This passkey is already registered.';
    return e.message || 'Something went wrong. Try again.';
  }

  // Sign in with a passkey alone: a button, and the passkeys offered in
  // the username field's autofill (conditional mediation).
  async function login(box) {
    const status = box.querySelector('[data-status]');
    let conditional = null;
    // One sign-in finishes: the autofill request can resolve in the same
    // moment the button aborts it, and a second sign-in would replace the
    // session whose CSRF token the next page already carries.
    let finishing = false;
    const run = async (mediation) => {
      const opts = await post(box.dataset.options);
      const ctrl = new AbortController();
      if (mediation === 'conditional') conditional = ctrl;
      const cred = await navigator.credentials.get({
        publicKey: PKC.parseRequestOptionsFromJSON(opts.publicKey), mediation, signal: ctrl.signal,
      });
      if (finishing) return;
      finishing = true;
      status.textContent = 'Signing in…';
      try {
        const done = await post(box.dataset.finish, { state: opts.state, credential: cred.toJSON(), return_to: box.dataset.return });
        location.assign(done.redirect);
      } catch (e) {
        finishing = false; // refused: the button may try again
        throw e;
      }
    };
    box.hidden = false;
    box.querySelector('button').addEventListener('click', () => {
      if (finishing) return;
      if (conditional) { conditional.abort(); conditional = null; }
      status.textContent = '';
      run('optional').catch((e) => { status.textContent = explain(e); });
    });
    if (PKC.isConditionalMediationAvailable && await PKC.isConditionalMediationAvailable()) {
      run('conditional').catch((e) => {
        if (e.name !== 'AbortError' && e.name !== 'NotAllowedError') status.textContent = explain(e);
      });
    }
  }

  // ceremony wires box's button to a ceremony that needs a signed-in
  // session (its CSRF token): fetch the options, let the browser answer
  // them with ask, send the credential with the fields extra returns, and
  // follow the redirect.
  function ceremony(box, ask, extra) {
    const status = box.querySelector('[data-status]');
    box.hidden = false;
    box.querySelector('button').addEventListener('click', async () => {
      status.textContent = '';
      try {
        const opts = await post(box.dataset.options, {}, box.dataset.csrf);
        const cred = await ask(opts.publicKey);
        const done = await post(box.dataset.finish, {
          state: opts.state, credential: cred.toJSON(), csrf: box.dataset.csrf, return_to: box.dataset.return, ...extra(),
        });
        location.assign(done.redirect);
      } catch (e) { status.textContent = explain(e); }
    });
  }

  // A passkey as the second factor, after the password.
  function factor(box) {
    ceremony(box, (opts) => navigator.credentials.get({ publicKey: PKC.parseRequestOptionsFromJSON(opts) }), () => ({}));
  }

  // Registering a passkey (account page, or enrolment at sign-in).
  function register(box) {
    const name = box.querySelector('input[name=passkey-name]');
    ceremony(box, (opts) => navigator.credentials.create({ publicKey: PKC.parseCreationOptionsFromJSON(opts) }),
      () => ({ name: name ? name.value : '' }));
  }

  const kinds = { login, factor, register };
  for (const box of document.querySelectorAll('[data-passkey]')) {
    const start = kinds[box.dataset.passkey];
    if (start) start(box);
  }
})();
