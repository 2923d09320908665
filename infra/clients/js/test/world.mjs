// The world around the kit in its tests, over a running devstack: the wx
// object is WeChat's client side played over the sandbox's control API
// (wx.login asks the sandbox for a person's code), a page is a browser's
// location and history, and a sign-in is followed as a browser follows it
// (redirects, cookies, the person answering the consent page). wxbridge
// itself is never stood in for.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';

import { postJSON } from './devstack.mjs';

// world is the helpers bound to one devstack (startDevstack's answer).
export function world(stack) {
  const config = stack.config;
  const api = config.api_url;
  const sandbox = config.sandbox_url;

  const person = (nickname) => postJSON(sandbox + '/sandbox/people', { nickname });
  const appsOf = (kind) => config.apps.filter((a) => a.kind === kind);

  // clearFaults disarms the sandbox's and the devstack's injected faults.
  async function clearFaults() {
    await fetch(sandbox + '/sandbox/faults', { method: 'DELETE' });
    await fetch(stack.url + '/_dev/faults', { method: 'DELETE' });
  }

  // wechat is a mini program's wx for one sandbox person: login gets the
  // person's code from the sandbox (POST /sandbox/people/{id}/wx-login),
  // request is fetch (or send: a fetch with something in front of
  // wxbridge). seen counts the logins and records every request.
  function wechat(id, appid, send = fetch) {
    const seen = { logins: 0, codes: [], requests: [] };
    const wx = {
      login({ success, fail }) {
        seen.logins++;
        postJSON(`${sandbox}/sandbox/people/${id}/wx-login`, appid ? { appid } : {}).then(
          (r) => { seen.codes.push(r.code); success({ code: r.code, errMsg: 'login:ok' }); },
          (e) => fail({ errMsg: 'login:fail ' + e.message }),
        );
      },
      request({ url, method, header, data, success, fail }) {
        seen.requests.push({ method, path: url.startsWith(api) ? url.slice(api.length) : url, auth: header.Authorization, body: data });
        send(url, { method, headers: header, body: data }).then(async (r) => {
          const text = await r.text();
          let body = text;
          try { body = JSON.parse(text); } catch {}
          success({ statusCode: r.status, data: body, header: Object.fromEntries(r.headers) });
        }, (e) => fail({ errMsg: 'request:fail ' + e.message }));
      },
    };
    return { wx, seen };
  }

  // visit follows a sign-in from its first URL to the page it comes back
  // to, as a browser does (a cookie jar, redirects), the person answering
  // the platform's consent page (or refusing).
  async function visit(start, returnTo, consent) {
    const jar = new Map();
    let next = start;
    for (let hops = 0; hops < 6; hops++) {
      const res = await fetch(next, { redirect: 'manual', headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } });
      await res.arrayBuffer();
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(';');
        const i = pair.indexOf('=');
        jar.set(pair.slice(0, i), pair.slice(i + 1));
      }
      const loc = res.headers.get('location');
      assert.equal(res.status, 302, `${next} answered ${res.status}`);
      if (loc.startsWith(returnTo + '#')) return loc;
      const u = new URL(loc, next);
      if (u.origin === new URL(sandbox).origin && u.pathname.startsWith('/connect/')) {
        for (const [k, v] of Object.entries(consent)) u.searchParams.set(k, v);
      }
      next = u.href;
    }
    assert.fail('too many redirects');
  }

  // bindKey is the configuration secret's bind_key, as the business
  // backend holds it (read from moto's Secrets Manager).
  async function bindKey() {
    const res = await fetch(config.aws_endpoint_url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-amz-json-1.1',
        'X-Amz-Target': 'secretsmanager.GetSecretValue',
        // moto checks no signature, but reads the service and region here.
        Authorization: `AWS4-HMAC-SHA256 Credential=${config.aws_access_key_id}/20240101/${config.region}/secretsmanager/aws4_request, SignedHeaders=host, Signature=0`,
      },
      body: JSON.stringify({ SecretId: config.apps_secret }),
    });
    assert.equal(res.status, 200);
    return JSON.parse((await res.json()).SecretString).bind_key;
  }

  return { config, api, sandbox, person, appsOf, clearFaults, wechat, visit, bindKey };
}

// memory is a storage (as wx.getStorageSync or sessionStorage keep).
export function memory(entries = {}) {
  const m = new Map(Object.entries(entries));
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v), removeItem: (k) => m.delete(k), m };
}

// retired is a session wxbridge refuses: well formed, unexpired, signed
// with a key the deployment no longer has (session_key rotated twice).
export function retired(appid) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: 'HS256', typ: 'JWT', kid: 'deadbeef' }) + '.' +
    b64({ iss: 'wxbridge', aud: ['wxbridge-mp'], sub: 'o-gone', app: appid, iat: now, exp: now + 86400 });
  return head + '.' + createHmac('sha256', randomBytes(32)).update(head).digest('base64url');
}

// held is a session as the kit keeps it in storage.
export const held = (session, expiresAt) => JSON.stringify({ session, expiresAt });

// browserPage is a page at pageURL as a browser shows it: location and
// history. As in a browser, replaceState refuses an address on another
// origin (SecurityError) and setting location.hash keeps the old address
// in the history (entries).
export function browserPage(pageURL) {
  let u = new URL(pageURL);
  const entries = [u.href];
  const location = {
    get href() { return u.href; },
    get hash() { return u.hash; },
    set hash(h) { u.hash = h; entries.push(u.href); },
    get pathname() { return u.pathname; },
    get search() { return u.search; },
    assigned: [],
    assign(x) { this.assigned.push(x); },
  };
  const history = {
    state: null,
    replaceState(_s, _t, x) {
      const next = new URL(x, u);
      if (next.origin !== u.origin) throw new DOMException(`cannot move the history to ${next.origin}`, 'SecurityError');
      u = next;
      entries[entries.length - 1] = u.href;
    },
  };
  return { location, history, entries, arrive(x) { u = new URL(x); entries.push(u.href); } };
}

// bindToken signs a binding token as README's "Binding a business account"
// says (binding.Sign is the reference).
export function bindToken(key, externalID, expiresMs) {
  const exp = Math.floor(expiresMs / 1000).toString(36);
  const mac = createHmac('sha256', key).update(`wxbridge-bind-v1\n${externalID}\n${exp}`).digest().subarray(0, 16).toString('base64url');
  return `${externalID}.${exp}.${mac}`;
}

// newMember is a business account id no test has used.
export const newMember = () => 'kit-' + randomBytes(6).toString('hex');
