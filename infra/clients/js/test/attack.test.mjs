// Attacks on the kit's promises (issue 18), against the same devstack as
// kit.test.mjs: many concurrent calls, codes that must never be sent twice,
// sessions refused twice, hostile Retry-After values and error bodies,
// hostile consents, fragments and sign-in URLs. Where wxbridge answers
// correctly and the attack is on what stands between it and the kit, a
// gateway in front (front) rewrites or replaces the answer, or drops the
// connection, as a CDN, a proxy or an API Gateway authorizer can.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { miniProgram, h5, Client, fetchTransport, WxbridgeError } from '../dist/wxbridge.js';
import { startDevstack, postJSON } from './devstack.mjs';
import { world, memory, retired, held, browserPage, bindToken, newMember } from './world.mjs';

const kit = join(dirname(fileURLToPath(import.meta.url)), '..');

let stack, w, api;

before(async () => {
  stack = await startDevstack();
  w = world(stack);
  api = w.api;
});

after(async () => {
  await stack?.stop();
});

afterEach(() => w.clearFaults());

// front is fetch through a gateway in front of wxbridge: rule sees every
// request ({method, path, headers, body}) and answers it, by default with
// pass(req), wxbridge's own answer. Every request is recorded in sent.
function front(rule = (req, pass) => pass(req)) {
  const sent = [];
  const send = async (url, init) => {
    const req = { url, method: init.method, path: url.slice(api.length), headers: { ...init.headers }, body: init.body };
    sent.push(req);
    return rule(req, (r = req) => fetch(r.url, { method: r.method, headers: r.headers, body: r.body }));
  };
  return { send, sent, paths: () => sent.map((r) => r.method + ' ' + r.path) };
}

// lost is a dropped connection: what fetch rejects with.
const lost = () => Promise.reject(new TypeError('fetch failed', { cause: new Error('socket hang up') }));

const html = (status) => new Response(`<html><body><h1>${status} Bad Gateway</h1></body></html>`, { status, headers: { 'Content-Type': 'text/html' } });

// rewrite is a real answer with its headers changed.
async function rewrite(res, headers) {
  const h = new Headers(res.headers);
  for (const [k, v] of Object.entries(headers)) v === undefined ? h.delete(k) : h.set(k, v);
  return new Response(await res.text(), { status: res.status, headers: h });
}

const typed = (status, code) => (e) => {
  assert.ok(e instanceof WxbridgeError && e instanceof Error, `${e} is not a WxbridgeError`);
  assert.deepEqual([e.name, e.status, e.code], ['WxbridgeError', status, code], e.message);
  assert.ok(e.message, 'a message');
  return true;
};

const noSleep = async () => assert.fail('the kit waited');
const count = (seen, path) => seen.requests.filter((r) => r.path === path).length;

describe('attack: mini program', () => {
  test('40 concurrent calls at app start: one wx.login, one POST /mp/login', async () => {
    const p = await w.person('Attack Crowd');
    const { wx, seen } = w.wechat(p.id);
    const client = miniProgram(wx, { apiUrl: api });
    const calls = [];
    for (let i = 0; i < 5; i++) {
      calls.push(client.me().then((m) => m.uid), client.login().then(() => client.me()).then((m) => m.uid));
      for (let j = 0; j < 6; j++) calls.push(client.login().then((r) => r.person.uid));
    }
    const uids = await Promise.all(calls);
    assert.equal(seen.logins, 1);
    assert.equal(count(seen, '/mp/login'), 1);
    assert.equal(count(seen, '/me'), 10);
    assert.equal(new Set(uids).size, 1);
  });

  test('a login code is never sent twice: after a lost answer to /mp/login, and after a 503, the next login has a new code', async () => {
    const p = await w.person('Attack Codes');
    // The first login reaches wxbridge, which spends the code; its answer is lost.
    let drop = 1;
    const gw = front(async (req, pass) => {
      const res = await pass(req);
      return req.path === '/mp/login' && drop-- > 0 ? lost() : res;
    });
    const { wx, seen } = w.wechat(p.id, undefined, gw.send);
    const client = miniProgram(wx, { apiUrl: api, retries: 0 });
    await assert.rejects(client.login(), typed(0, 'network_error'));
    assert.equal(client.signedIn, false);
    // WeChat busy once: wxbridge answers 503 and the kit's call fails (no retries).
    await postJSON(w.sandbox + '/sandbox/faults', { path: '/sns/jscode2session', errcode: -1, count: 1 });
    await assert.rejects(client.me(), typed(503, 'wechat_unavailable'));
    // Busy again: the kit's own retry after Retry-After.
    await postJSON(w.sandbox + '/sandbox/faults', { path: '/sns/jscode2session', errcode: -1, count: 1 });
    const again = miniProgram(wx, { apiUrl: api, sleep: async () => {} });
    assert.match((await again.me()).uid, /\w/);
    assert.match((await client.me()).uid, /\w/);
    const sentCodes = gw.sent.filter((r) => r.path === '/mp/login').map((r) => JSON.parse(r.body).code);
    assert.equal(sentCodes.length, 5);
    assert.equal(new Set(sentCodes).size, 5, 'every login sent a code of its own');
    assert.deepEqual(sentCodes, seen.codes);
  });

  test('a session refused twice: one re-login, one resend, then invalid_session; never a loop', async () => {
    const p = await w.person('Attack Twice');
    // The gateway sends a session wxbridge refuses in place of the kit's.
    const gw = front((req, pass) => pass(req.path === '/me' ? { ...req, headers: { ...req.headers, Authorization: 'Bearer ' + retired(w.config.mp_appid) } } : req));
    const { wx, seen } = w.wechat(p.id, undefined, gw.send);
    const client = miniProgram(wx, { apiUrl: api, sleep: noSleep });
    await client.login();
    gw.sent.length = 0;
    await assert.rejects(client.me(), typed(401, 'invalid_session'));
    assert.deepEqual(gw.paths(), ['GET /me', 'POST /mp/login', 'GET /me']);
    assert.equal(seen.logins, 2);
    assert.equal(client.signedIn, false, 'a session refused is not kept');
    // Five at once: each call sends twice at most, and all fail.
    gw.sent.length = 0;
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map(() => client.me()));
    assert.ok(results.every((r) => r.status === 'rejected' && r.reason.code === 'invalid_session'));
    assert.equal(gw.paths().filter((q) => q === 'GET /me').length, 10);
    assert.ok(seen.logins <= 2 + 5);
  });

  test('a 401 on /mp/login itself (an authorizer in front) fails the call at once', async () => {
    const p = await w.person('Attack Login 401');
    const gw = front((req, pass) => (req.path === '/mp/login'
      ? new Response('{"message":"Unauthorized"}', { status: 401, headers: { 'Content-Type': 'application/json' } })
      : pass(req)));
    const { wx } = w.wechat(p.id, undefined, gw.send);
    await assert.rejects(miniProgram(wx, { apiUrl: api, sleep: noSleep }).me(), typed(401, 'http_401'));
    assert.deepEqual(gw.paths(), ['POST /mp/login']);
    // With a session kept from before that wxbridge refuses: one /me, one login.
    gw.sent.length = 0;
    const storage = memory({ 'wxbridge.session': held(retired(w.config.mp_appid), Date.now() + 86400e3) });
    await assert.rejects(miniProgram(wx, { apiUrl: api, storage, sleep: noSleep }).me(), typed(401, 'http_401'));
    assert.deepEqual(gw.paths(), ['GET /me', 'POST /mp/login']);
  });

  test('Retry-After is honoured and bounded: seconds, dates, huge and malformed values', async () => {
    const p = await w.person('Attack Retry-After');
    // wxbridge's first 503 is kept and answered again for every later try,
    // its Retry-After rewritten (each real 503 costs the SDK's retries).
    let retryAfter, kept;
    const gw = front(async (req, pass) => {
      if (req.path !== '/mp/subscribe-consents') return pass(req);
      if (!kept) kept = await pass(req);
      return rewrite(kept.clone(), { 'Retry-After': retryAfter });
    });
    const { wx } = w.wechat(p.id, undefined, gw.send);
    const waits = [];
    const client = miniProgram(wx, { apiUrl: api, sleep: async (ms) => { waits.push(ms); } });
    await client.login();
    // The table fails for this person's consents until cleared: every try is a real 503.
    await postJSON(stack.url + '/_dev/faults', { service: 'dynamodb', match: p.mp_openid, count: 0, error: 'InternalServerError' });
    const soon = new Date(Date.now() + 5000).toUTCString(); // whole seconds: 4 or 5 s from now
    const cases = [
      // [Retry-After, the waits, retryAfter surfaced]
      ['2', [2000, 2000], 2],
      [undefined, [1000, 1000], undefined],
      ['soon', [1000, 1000], undefined],
      ['1.5', [1000, 1000], undefined],
      ['-5', [1000, 1000], undefined],
      ['0', [1000, 1000], 0],
      [soon, null, null],
      ['86400', [], 86400],
      ['9'.repeat(400), [], Infinity],
      ['Fri, 31 Dec 9999 23:59:59 GMT', [], null],
    ];
    for (const [value, want, surfaced] of cases) {
      retryAfter = value;
      waits.length = 0;
      gw.sent.length = 0;
      const e = await client.recordConsents({ 'tpl-attack-retry_0001': 'accept', errMsg: 'requestSubscribeMessage:ok' }).then(
        () => assert.fail('recorded'), (e) => e);
      typed(503, 'unavailable')(e);
      if (want) assert.deepEqual(waits, want, `Retry-After ${value}`);
      else assert.ok(waits.length === 2 && waits.every((ms) => ms >= 3000 && ms <= 5000), `Retry-After ${value}: waits ${waits}`);
      if (surfaced !== null) assert.equal(e.retryAfter, surfaced, `Retry-After ${value}`);
      assert.equal(gw.sent.length, waits.length + 1, `Retry-After ${value}: one request per try`);
    }
  });

  test('every error code wxbridge answers the kit is a typed WxbridgeError', async () => {
    const p = await w.person('Attack Codes Table');
    const { wx } = w.wechat(p.id);
    const client = miniProgram(wx, { apiUrl: api, retries: 0 });
    await client.login();
    const fault = (path, errcode) => postJSON(w.sandbox + '/sandbox/faults', { path, errcode, count: 1 });
    const oa = w.appsOf('official_account')[0].appid;
    const cases = [
      ['invalid_request', 400, () => client.recordConsents({ errMsg: 'requestSubscribeMessage:ok' })],
      ['invalid_code', 400, () => new Client({ apiUrl: api, transport: fetchTransport(), code: async () => 'not-a-wx-login-code' }).login()],
      ['invalid_code', 400, () => client.verifyPhone('not-a-phone-code')],
      ['invalid_bind_token', 400, () => client.bindAccount('forged.token.AAAAAAAAAAAAAAAAAAAAAA')],
      ['login_blocked', 403, async () => { await fault('/sns/jscode2session', 40226); return miniProgram(w.wechat(p.id).wx, { apiUrl: api }).login(); }],
      ['unknown_app', 404, () => miniProgram(w.wechat(p.id).wx, { apiUrl: api, appid: oa }).login()],
      ['binding_conflict', 409, async () => {
        const key = await w.bindKey();
        await client.bindAccount(bindToken(key, newMember(), Date.now() + 600e3));
        return client.bindAccount(bindToken(key, newMember(), Date.now() + 600e3));
      }],
      ['body_too_large', 413, () => client.recordConsents({ errMsg: 'requestSubscribeMessage:ok', 'tpl-attack-big_0001': 'accept', pad: 'x'.repeat(17 * 1024) })],
      ['wechat_unavailable', 503, async () => { await fault('/sns/jscode2session', -1); return miniProgram(w.wechat(p.id).wx, { apiUrl: api, retries: 0 }).login(); }],
      ['unavailable', 503, async () => {
        await postJSON(stack.url + '/_dev/faults', { service: 'dynamodb', match: p.mp_openid, count: 0, error: 'InternalServerError' });
        return client.recordConsents({ 'tpl-attack-down_0001': 'accept', errMsg: 'requestSubscribeMessage:ok' });
      }],
    ];
    for (const [code, status, call] of cases) {
      await assert.rejects(call(), typed(status, code), code);
      await w.clearFaults();
    }
    // invalid_session is "a session refused twice" above; busy and
    // phone_superseded are races, stale_session_key and invalid_open_data
    // /mp/profile's, which the kit does not call.
  });

  test('answers that are not wxbridge\'s: HTML pages, a 200 without JSON, a refused connection, a failed wx.login', async () => {
    const p = await w.person('Attack Foreign');
    let answer;
    const gw = front((req, pass) => (answer && req.path !== '/mp/login' ? answer() : pass(req)));
    const { wx } = w.wechat(p.id, undefined, gw.send);
    const viaWx = miniProgram(wx, { apiUrl: api, sleep: noSleep });
    const viaFetch = new Client({ apiUrl: api, transport: fetchTransport(gw.send), code: async () => (await postJSON(`${w.sandbox}/sandbox/people/${p.id}/wx-login`, {})).code, sleep: noSleep });
    for (const client of [viaWx, viaFetch]) {
      await client.login();
      answer = () => html(502);
      await assert.rejects(client.me(), typed(502, 'http_502'));
      answer = () => html(200); // a captive portal
      await assert.rejects(client.me(), typed(200, 'http_200'));
      answer = () => new Response('', { status: 200 });
      await assert.rejects(client.recordConsents({ 'tpl-x_0001': 'accept' }), typed(200, 'http_200'));
      answer = () => new Response('[1]', { status: 200 });
      await assert.rejects(client.me(), typed(200, 'http_200'));
      answer = lost;
      await assert.rejects(client.me(), typed(0, 'network_error'));
      answer = undefined;
      assert.equal(client.signedIn, true, 'none of these drops the session');
    }
    // Nothing listens on port 1: the connection is refused.
    await assert.rejects(new Client({ apiUrl: 'http://127.0.0.1:1', transport: fetchTransport(), code: async () => 'c' }).login(), typed(0, 'network_error'));
    const offline = { request: wx.request, login: ({ fail }) => fail({ errMsg: 'login:fail network' }) };
    await assert.rejects(miniProgram(offline, { apiUrl: api }).me(), typed(0, 'login_failed'));
    // A login answered 200 without a session.
    const empty = front((req) => new Response('{}', { status: 200 }));
    await assert.rejects(miniProgram(w.wechat(p.id, undefined, empty.send).wx, { apiUrl: api }).login(), typed(200, 'http_200'));
  });

  test('verifyPhone is sent once: a 503 and a lost answer are not retried; after a 401 the unspent code is resent', async () => {
    const p = await w.person('Attack Phone');
    let drop = 0, refuse = 0;
    const gw = front(async (req, pass) => {
      if (req.path === '/mp/phone' && refuse-- > 0) req = { ...req, headers: { ...req.headers, Authorization: 'Bearer ' + retired(w.config.mp_appid) } };
      const res = await pass(req);
      return req.path === '/mp/phone' && drop-- > 0 ? lost() : res;
    });
    const { wx, seen } = w.wechat(p.id, undefined, gw.send);
    const client = miniProgram(wx, { apiUrl: api, sleep: noSleep });
    await client.login();
    const code = async () => (await postJSON(`${w.sandbox}/sandbox/people/${p.id}/phone-code`, {})).code;
    const masked = '+****' + p.phone.slice(-4);

    await postJSON(w.sandbox + '/sandbox/faults', { path: '/wxa/business/getuserphonenumber', errcode: -1, count: 1 });
    await assert.rejects(client.verifyPhone(await code()), (e) => typed(503, 'wechat_unavailable')(e) && e.retryAfter === 2);
    assert.equal(count(seen, '/mp/phone'), 1);

    // wxbridge stores the number; its answer is lost on the way back.
    drop = 1;
    const spent = await code();
    await assert.rejects(client.verifyPhone(spent), typed(0, 'network_error'));
    assert.equal(count(seen, '/mp/phone'), 2);
    assert.equal((await client.me()).phone.masked, masked, 'GET /me shows the number stored');
    await assert.rejects(client.verifyPhone(spent), typed(400, 'invalid_code'));

    // wxbridge refuses the session before it spends the code: the resend verifies.
    refuse = 1;
    seen.requests.length = 0;
    assert.equal((await client.verifyPhone(await code())).phone.masked, masked);
    assert.deepEqual(seen.requests.map((q) => q.path), ['/mp/phone', '/mp/login', '/mp/phone']);
  });

  test('recordConsents with hostile input: typed refusals, nothing sent for what is not JSON, the session kept', async () => {
    const p = await w.person('Attack Consents');
    const { wx, seen } = w.wechat(p.id);
    const client = miniProgram(wx, { apiUrl: api, sleep: noSleep });
    await client.login();
    for (const input of [null, undefined, 'accept', 42, ['tpl-a_0001'], {}, { errMsg: 'requestSubscribeMessage:fail cancel', 'tpl-a_0001': 'accept' },
      { errMsg: 'requestSubscribeMessage:ok', 'tpl-a_0001': 'accept', 'not a template!': 'accept' },
      { errMsg: 'requestSubscribeMessage:ok', 'tpl-a_0001': 'maybe' },
      { errMsg: 'requestSubscribeMessage:ok', 'tpl-a_0001': { toString: () => 'accept' } },
      Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`tpl-many_${i}`, 'accept']))]) {
      await assert.rejects(client.recordConsents(input), typed(400, 'invalid_request'), JSON.stringify(input));
    }
    // An extra key the platform adds (errCode) is fine; __proto__ is a key like any other.
    assert.deepEqual(await client.recordConsents(JSON.parse('{"errMsg":"requestSubscribeMessage:ok","errCode":0,"tpl-a_0001":"accept","__proto__":"filter"}')), { recorded: 1 });
    const sent = seen.requests.length;
    const cycle = { 'tpl-a_0001': 'accept' };
    cycle.self = cycle;
    for (const input of [cycle, { 'tpl-a_0001': 1n }]) await assert.rejects(client.recordConsents(input), typed(0, 'invalid_request'));
    assert.equal(seen.requests.length, sent, 'nothing sent');
    assert.equal(seen.logins, 1);
    assert.equal(client.signedIn, true);
  });

  test('a device clock a week ahead: one login serves every call', async () => {
    const p = await w.person('Attack Clock');
    const { wx, seen } = w.wechat(p.id);
    const client = miniProgram(wx, { apiUrl: api, now: () => Date.now() + 8 * 86400e3 });
    await client.me();
    await client.me();
    assert.equal(client.signedIn, true);
    assert.equal(seen.logins, 1);
  });

  test('an appid that would leave its path segment is refused before anything is sent', () => {
    const wx = { request: () => assert.fail('sent'), login: () => assert.fail('wx.login') };
    for (const appid of ['..', '.', '../web', 'wx1/../../me', 'a?b', 'a#b', '%2e%2e', 'a b']) {
      assert.throws(() => miniProgram(wx, { apiUrl: api, appid }), typed(0, 'unknown_app'), appid);
    }
  });
});

describe('attack: H5', () => {
  const pageURL = () => w.config.h5_origin + '/_dev/h5?tab=orders';

  // signedInPage is a real sign-in's way back: the URL of the page with
  // the fragment wxbridge put the session in.
  async function realFragment(page = pageURL()) {
    const p = await w.person('Attack H5');
    const signer = h5({ apiUrl: api, location: browserPage(page).location, storage: memory() });
    return w.visit(signer.signInURL({ returnTo: page }), page, { person: p.id });
  }

  test('completeSignIn removes every outcome from the address bar, even one that fails or does not read', () => {
    const session = retired(w.config.oa.appid);
    const cases = [
      // [fragment, outcome or thrown code, the fragment left]
      ['#error=access_denied', 'access_denied', ''],
      [`#session=${session}&error=server_error`, 'server_error', ''],
      [`#error=temporarily_unavailable&session=${session}`, 'temporarily_unavailable', ''],
      ['#session=', 'server_error', ''],
      ['#session', 'server_error', ''],
      ['#session=%E0%A4%A&expires_at=1', 'server_error', ''],
      ['#error=', 'server_error', ''],
      ['#error=%ZZ', 'server_error', ''],
      ['#snapshot=1', 'snapshot', ''],
      ['#tab=orders', 'none', '#tab=orders'],
      ['#__proto__=x&constructor=y', 'none', '#__proto__=x&constructor=y'],
      ['#', 'none', ''],
      ['', 'none', ''],
    ];
    for (const [fragment, want, left] of cases) {
      const page = browserPage(pageURL());
      const kit = h5({ apiUrl: api, location: page.location, history: page.history, storage: memory() });
      kit.signInURL();
      page.arrive(pageURL() + fragment);
      let got;
      try { got = kit.completeSignIn(); } catch (e) { typed(0, e.code)(e); got = e.code; }
      assert.equal(got, want, fragment);
      assert.equal(page.location.hash, left, fragment);
      assert.equal(kit.signedIn, false, fragment);
    }
  });

  test('the session leaves the address bar without history.replaceState, and on a page whose path starts with //', async () => {
    // No history: the hash is emptied.
    const page = browserPage(pageURL());
    const kit = h5({ apiUrl: api, location: page.location, storage: memory() });
    kit.signInURL();
    page.arrive(await realFragment());
    assert.equal(kit.completeSignIn(), 'signed_in');
    assert.equal(page.location.hash, '');
    // A history that refuses: the hash is emptied all the same.
    const refusing = browserPage(pageURL());
    const k2 = h5({ apiUrl: api, location: refusing.location, history: { state: null, replaceState: () => { throw new DOMException('no', 'SecurityError'); } }, storage: memory() });
    k2.signInURL();
    refusing.arrive(await realFragment());
    assert.equal(k2.completeSignIn(), 'signed_in');
    assert.equal(refusing.location.hash, '');
    // A page at https://h5-origin//evil.example/p: its pathname alone is
    // another origin's address, which replaceState refuses.
    const odd = w.config.h5_origin + '//evil.example/p';
    const oddPage = browserPage(odd);
    const k3 = h5({ apiUrl: api, location: oddPage.location, history: oddPage.history, storage: memory() });
    k3.signInURL();
    oddPage.arrive(await realFragment(odd));
    assert.equal(k3.completeSignIn(), 'signed_in');
    assert.equal(oddPage.location.href, odd);
    assert.match((await k3.me()).uid, /\w/);
  });

  test('a session the page did not ask for (a link carrying someone else\'s session, or one to another origin) is refused', async () => {
    const planted = await realFragment(); // the attacker's own sign-in
    const page = browserPage(pageURL());
    const storage = memory();
    const victim = h5({ apiUrl: api, location: page.location, history: page.history, storage });
    page.arrive(planted);
    assert.throws(() => victim.completeSignIn(), typed(0, 'unexpected_session'));
    assert.equal(page.location.hash, '');
    assert.equal(victim.signedIn, false);
    // A sign-in started for another origin does not vouch for this one.
    victim.signInURL({ returnTo: 'https://elsewhere.example/p' });
    page.arrive(planted);
    assert.throws(() => victim.completeSignIn(), typed(0, 'unexpected_session'));
    // A sign-in the page started is accepted once: the next planted link is refused again.
    victim.signIn();
    page.arrive(await realFragment());
    assert.equal(victim.completeSignIn(), 'signed_in');
    page.arrive(planted);
    assert.throws(() => victim.completeSignIn(), typed(0, 'unexpected_session'));
  });

  test('a device clock a week ahead: the session arrives kept, not expired (no sign-in loop)', async () => {
    const page = browserPage(pageURL());
    const kit = h5({ apiUrl: api, location: page.location, history: page.history, storage: memory(), now: () => Date.now() + 8 * 86400e3 });
    kit.signInURL();
    page.arrive(await realFragment());
    assert.equal(kit.completeSignIn(), 'signed_in');
    assert.equal(kit.signedIn, true);
  });

  test('signIn URLs: returnTo and scope stay inside their parameters, appid inside its segment', async () => {
    const page = browserPage(pageURL() + '#orders');
    const kit = h5({ apiUrl: api, location: page.location, history: page.history, storage: memory() });
    const hostile = w.config.h5_origin + '/p?a=1&scope=snsapi_userinfo&return_to=https://evil.example/#frag';
    const u = new URL(kit.signInURL({ returnTo: hostile, scope: 'snsapi_base&return_to=https://evil.example/' }));
    assert.equal(u.pathname, new URL(api).pathname.replace(/\/$/, '') + '/oauth/authorize');
    assert.deepEqual([...u.searchParams.keys()], ['scope', 'return_to']);
    assert.equal(u.searchParams.get('return_to'), hostile.split('#')[0], 'the fragment dropped: wxbridge refuses one');
    assert.equal(new URL(kit.signInURL()).searchParams.get('return_to'), pageURL(), "the page's own fragment is not the way back");
    // wxbridge refuses what the kit cannot judge: another origin, a scope it does not know.
    for (const bad of [kit.signInURL({ returnTo: 'https://evil.example/' }), kit.signInURL({ returnTo: '//evil.example/' }), kit.signInURL({ scope: 'snsapi_base&x' })]) {
      const res = await fetch(bad, { redirect: 'manual' });
      await res.arrayBuffer();
      assert.equal(res.status, 400, bad);
    }
    // A configured non-default official account has its own path.
    const oa2 = w.appsOf('official_account').find((a) => !a.default);
    const res = await fetch(kit.signInURL({ appid: oa2.appid }), { redirect: 'manual' });
    await res.arrayBuffer();
    assert.equal(res.status, 302);
    for (const appid of ['..', '.', '../web', 'a/b', 'a?b', '%2e']) {
      assert.throws(() => kit.signIn({ appid }), typed(0, 'unknown_app'), appid);
      assert.throws(() => h5({ apiUrl: api, appid, location: page.location }), typed(0, 'unknown_app'), appid);
    }
    assert.deepEqual(page.location.assigned, [], 'the browser was sent nowhere');
  });
});

// classFields lists the lines of class bodies that declare a field
// ("name = …;" or "name;" among the methods).
function classFields(code) {
  const fields = [];
  const bodies = []; // the brace depth of each class body we are in
  let depth = 0;
  for (const line of code.split('\n')) {
    if (bodies.at(-1) === depth && /^\s*(static\s+)?[A-Za-z_$][\w$]*\s*(=(?!=)|;)/.test(line)) fields.push(line.trim());
    if (/\bclass\b[^{]*\{\s*$/.test(line)) bodies.push(depth + 1);
    depth += (line.match(/\{/g) || []).length - (line.match(/\}/g) || []).length;
    while (bodies.length && depth < bodies.at(-1)) bodies.pop();
  }
  return fields;
}

describe('attack: the compiled kit', () => {
  const dist = join(kit, 'dist', 'wxbridge.js');

  test('dist is plain ES2017: tsc targets it, node parses it, no later syntax or API appears', async () => {
    const tsconfig = JSON.parse(await readFile(join(kit, 'tsconfig.json'), 'utf8')).compilerOptions;
    assert.equal(tsconfig.target, 'ES2017');
    assert.deepEqual(tsconfig.lib, ['ES2017'], 'no later library: Promise.prototype.finally, Object.fromEntries, … do not type-check');
    await promisify(execFile)(process.execPath, ['--check', dist]);
    // The code without comments and string contents.
    const code = (await readFile(dist, 'utf8'))
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/[^\n]*/g, '')
      .replace(/"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`/g, '""');
    const later = {
      'optional chaining (ES2020)': /\?\.(?!\d)/,
      'nullish coalescing (ES2020)': /\?\?/,
      'logical assignment (ES2021)': /(\|\||&&|\?\?)=/,
      'private names (ES2022)': /#[A-Za-z_$]/,
      'static blocks (ES2022)': /static\s*\{/,
      'async iteration (ES2018)': /for\s+await|async\s*\*/,
      'object rest and spread (ES2018)': /\{\s*\.\.\./,
      'optional catch binding (ES2019)': /catch\s*\{/,
      'numeric separators (ES2021)': /\d_\d/,
      'BigInt (ES2020)': /\b\d+n\b/,
      // tsc refuses later flags and groups for the target; these it would not.
      'regular expression features (ES2018)': /\(\?<|\\p\{/,
      'library past ES2017': /\.finally\(|fromEntries|\.flat(Map)?\(|matchAll|allSettled|replaceAll|globalThis|Promise\.any|\.at\(/,
      'modules loaded at run time': /\bimport\b|\brequire\(/,
    };
    for (const [what, re] of Object.entries(later)) assert.doesNotMatch(code, re, what);
    assert.deepEqual(classFields(code), [], 'class fields (ES2022)');
  });

  test('the kit has no runtime dependencies', async () => {
    const pkg = JSON.parse(await readFile(join(kit, 'package.json'), 'utf8'));
    for (const k of ['dependencies', 'peerDependencies', 'optionalDependencies', 'bundledDependencies']) assert.equal(pkg[k], undefined, k);
    assert.deepEqual(Object.keys(pkg.devDependencies), ['typescript']);
  });
});
