// The scripted user of the interop clients (client.mjs with the SDK 1.x,
// stepup-client-v2.mjs with the client 2.x): a browser with a cookie jar
// that follows an authorization URL through passgate's login and consent
// pages to the client's redirect URI.

export function unescapeHTML(s) {
    return s
        .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
        .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
        .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

function attr(tag, name) {
    const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`));
    return m ? unescapeHTML(m[1]) : undefined;
}

// parseForm returns the first POST form's action and hidden/text fields.
export function parseForm(html, pageURL) {
    const fm = html.match(/<form\b[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/i);
    if (!fm) return undefined;
    const formTag = fm[0].slice(0, fm[0].indexOf('>') + 1);
    const action = new URL(attr(formTag, 'action') ?? '', pageURL).href;
    const fields = {};
    for (const tag of fm[1].match(/<input\b[^>]*>/gi) ?? []) {
        const name = attr(tag, 'name');
        if (name) fields[name] = attr(tag, 'value') ?? '';
    }
    const buttons = (fm[1].match(/<button\b[^>]*>/gi) ?? []).map(t => ({ name: attr(t, 'name'), value: attr(t, 'value') }));
    return { action, fields, buttons };
}

// Browser signs in as username and approves consent. redirect is the
// client's redirect URI, where playUser stops. check(cond, what, detail)
// is told what the pages got right or wrong (optional), log(line) what
// the browser did (optional), and redact hides secrets in those lines.
// Set issuer (from discovery) before playUser: form posts carry its
// origin, and a redirect elsewhere is an error.
export class Browser {
    constructor({ redirect, username, password, check = () => true, log = () => {}, redact = s => s }) {
        Object.assign(this, { redirect, username, password, check, log, redact });
        this.jar = new Map(); // name -> value (one origin: the issuer)
        this.issuer = undefined;
        this.steps = []; // 'login', 'consent', in the order shown
        this.consents = []; // the scopes each consent page showed
        this.code = this.iss = this.state = undefined; // of the last redirect
    }

    storeCookies(res) {
        for (const sc of res.headers.getSetCookie()) {
            const [pair, ...attrs] = sc.split(';');
            const eq = pair.indexOf('=');
            const name = pair.slice(0, eq).trim();
            const value = pair.slice(eq + 1).trim();
            const maxAge = attrs.find(a => /^\s*max-age=/i.test(a));
            if (value === '' || (maxAge && Number(maxAge.split('=')[1]) <= 0)) this.jar.delete(name);
            else this.jar.set(name, value);
            this.log(`    browser: Set-Cookie ${name} [${attrs.map(a => a.trim()).join('; ')}]`);
        }
    }

    async browse(url, { method = 'GET', form } = {}) {
        const headers = { 'User-Agent': 'passgate-interop-browser/1', Accept: 'text/html' };
        if (this.jar.size) headers.Cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
        let body;
        if (form) {
            headers['Content-Type'] = 'application/x-www-form-urlencoded';
            headers.Origin = new URL(this.issuer).origin;
            body = new URLSearchParams(form).toString();
        }
        const res = await fetch(url, { method, headers, body, redirect: 'manual' });
        this.storeCookies(res);
        const loc = res.headers.get('location');
        this.log(`    browser: ${method} ${this.redact(url)} -> ${res.status}${loc ? ' Location: ' + this.redact(loc) : ''}`);
        return res;
    }

    // playUser drives the browser from the authorization URL to the
    // redirect URI and returns (and keeps) its code, iss and state; an
    // error in the redirect is thrown.
    async playUser(authURL) {
        const check = this.check;
        let res = await this.browse(authURL);
        let url = authURL;
        for (let i = 0; i < 12; i++) {
            if ([301, 302, 303, 307, 308].includes(res.status)) {
                const loc = new URL(res.headers.get('location'), url).href;
                if (loc.startsWith(this.redirect)) {
                    check([302, 303].includes(res.status), 'redirect to the client uses 302/303', String(res.status));
                    const q = new URL(loc).searchParams;
                    if (q.get('error')) throw new Error(`authorization error at redirect: ${q.get('error')}: ${q.get('error_description')}`);
                    this.code = q.get('code');
                    this.iss = q.get('iss');
                    this.state = q.get('state');
                    return { code: this.code, iss: this.iss, state: this.state };
                }
                if (new URL(loc).origin !== new URL(this.issuer).origin) throw new Error(`redirect leaves the issuer: ${loc}`);
                url = loc;
                res = await this.browse(url);
                continue;
            }
            const html = await res.text();
            if (res.status !== 200) throw new Error(`page ${url} answered ${res.status}: ${html.slice(0, 400)}`);
            const form = parseForm(html, url);
            if (!form) throw new Error(`no form on ${url}: ${html.slice(0, 400)}`);
            if ('password' in form.fields) {
                this.steps.push('login');
                check('csrf' in form.fields && 'return_to' in form.fields && 'username' in form.fields, 'login form has username, password, csrf, return_to', Object.keys(form.fields));
                const f = { ...form.fields, username: this.username, password: this.password };
                url = form.action;
                res = await this.browse(form.action, { method: 'POST', form: f });
                if (res.status === 200) {
                    const page = await res.clone().text();
                    const err = page.match(/<p class="msg">([^<]*)<\/p>/);
                    if (err) throw new Error(`login failed: ${unescapeHTML(err[1])}`);
                }
                check(res.status !== 307 && res.status !== 308, 'login POST answered without 307/308', String(res.status));
                continue;
            }
            const approve = form.buttons.find(b => b.name === 'decision' && b.value === 'approve');
            if (approve) {
                this.steps.push('consent');
                this.consents.push([...html.matchAll(/<code class="scope">([^<]*)<\/code>/g)].map(m => unescapeHTML(m[1])));
                const name = html.match(/class="client-name">([^<]*)</);
                const host = html.match(/class="redirect-host">([^<]*)</);
                this.log(`    browser: consent page: client "${name && unescapeHTML(name[1])}", redirect host ${host && host[1]}`);
                res = await this.browse(form.action, { method: 'POST', form: { ...form.fields, decision: 'approve' } });
                url = form.action;
                check(res.status === 302 || res.status === 303, 'consent POST answered 302/303', String(res.status));
                continue;
            }
            throw new Error(`unrecognised page at ${url}: ${html.slice(0, 400)}`);
        }
        throw new Error('too many steps');
    }
}
