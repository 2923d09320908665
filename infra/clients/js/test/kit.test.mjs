// The kit against a running devstack: wxbridge's real login and
// oauth-callback functions, the WeChat sandbox as the platform. The wx
// object is WeChat's client side played over the sandbox's control API
// (wx.login asks the sandbox for a person's code), and the H5 tests play
// the browser (location, history, redirects with cookies); wxbridge itself
// is never stood in for.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';

import { miniProgram, h5, WxbridgeError } from '../dist/wxbridge.js';
import { startDevstack, postJSON } from './devstack.mjs';
import { world, memory, retired, held, browserPage, bindToken, newMember } from './world.mjs';

let stack, api, sandbox, config, person, appsOf, wechat, visit, bindKey;

before(async () => {
  stack = await startDevstack();
  ({ config, api, sandbox, person, appsOf, wechat, visit, bindKey } = world(stack));
});

after(async () => {
  await stack?.stop();
});

afterEach(() => world(stack).clearFaults());

const logins = (seen) => seen.requests.filter((r) => r.path.endsWith('/login')).length;

describe('mini program', () => {
  test('login once, then every call carries the session', async () => {
    const p = await person('Kit Login');
    const { wx, seen } = wechat(p.id);
    const client = miniProgram(wx, { apiUrl: api });
    const r = await client.login();
    assert.match(r.person.uid, /\w/);
    assert.equal(r.unionid_known, true);
    assert.equal(await client.login().then((x) => x.person.uid), r.person.uid, 'a second login() reuses the session');
    const me = await client.me();
    assert.equal(me.uid, r.person.uid);
    assert.ok(me.identities.some((i) => i.kind === 'mini_program' && i.appid === config.mp_appid && i.openid === p.mp_openid));
    assert.equal(seen.logins, 1);
    assert.deepEqual(seen.requests.map((q) => q.method + ' ' + q.path), ['POST /mp/login', 'GET /me']);
    assert.match(seen.requests[1].auth, /^Bearer \S+$/);
  });

  test('concurrent calls at app start share one wx.login and one POST /mp/login', async () => {
    const p = await person('Kit Concurrent');
    const { wx, seen } = wechat(p.id);
    const client = miniProgram(wx, { apiUrl: api });
    const [r, ...mes] = await Promise.all([client.login(), client.me(), client.me(), client.login().then(() => client.me())]);
    assert.equal(seen.logins, 1);
    assert.equal(logins(seen), 1);
    for (const me of mes) assert.equal(me.uid, r.person.uid);
  });

  test('a session wxbridge refuses (401) is dropped; one new login with a new code serves every waiting call', async () => {
    const p = await person('Kit Refused');
    const { wx, seen } = wechat(p.id);
    const stale = retired(config.mp_appid);
    const storage = memory({ 'wxbridge.session': held(stale, Date.now() + 86400e3) }); // kept from an earlier app start
    const client = miniProgram(wx, { apiUrl: api, storage });
    const mes = await Promise.all([client.me(), client.me(), client.me()]);
    assert.equal(seen.logins, 1, 'one re-login for the three calls refused');
    assert.equal(logins(seen), 1);
    assert.ok(mes.every((me) => me.uid === mes[0].uid));
    const kept = JSON.parse(storage.getItem('wxbridge.session'));
    assert.notEqual(kept.session, stale);
    const afterLogin = seen.requests.slice(seen.requests.findIndex((q) => q.path === '/mp/login'));
    assert.ok(afterLogin.every((q) => q.auth !== 'Bearer ' + stale), 'the refused session is never sent again');
  });

  test('a session past its expiry is not sent: a new login replaces it', async () => {
    const p = await person('Kit Expired');
    const { wx, seen } = wechat(p.id);
    const old = retired(config.mp_appid);
    const client = miniProgram(wx, { apiUrl: api, storage: memory({ 'wxbridge.session': held(old, Date.now() - 1000) }) });
    assert.equal(client.signedIn, false);
    await client.me();
    assert.deepEqual(seen.requests.map((q) => q.method + ' ' + q.path), ['POST /mp/login', 'GET /me']);
    assert.equal(seen.logins, 1);
  });

  test('503 waits Retry-After, then logs in with a new wx.login code; a wait over the bound fails at once', async () => {
    const p = await person('Kit Busy');
    // WeChat answers jscode2session with -1 (system busy) once: wxbridge
    // answers 503 wechat_unavailable, Retry-After 2.
    await postJSON(sandbox + '/sandbox/faults', { path: '/sns/jscode2session', errcode: -1, count: 1 });
    const { wx, seen } = wechat(p.id);
    const waits = [];
    const client = miniProgram(wx, { apiUrl: api, sleep: async (ms) => { waits.push(ms); } });
    await client.login();
    assert.deepEqual(waits, [2000]);
    assert.equal(seen.logins, 2);
    assert.notEqual(seen.codes[0], seen.codes[1], 'a login code is never reused');

    await postJSON(sandbox + '/sandbox/faults', { path: '/sns/jscode2session', errcode: -1, count: 1 });
    const impatient = miniProgram(wechat(p.id).wx, { apiUrl: api, maxRetryAfter: 1, sleep: async () => assert.fail('waited') });
    await assert.rejects(impatient.login(), (e) => {
      assert.ok(e instanceof WxbridgeError);
      assert.deepEqual([e.status, e.code, e.retryAfter], [503, 'wechat_unavailable', 2]);
      return true;
    });
  });

  test('phone: the getPhoneNumber code is verified, me() shows the number masked; a spent code is invalid_code', async () => {
    const p = await person('Kit Phone');
    const client = miniProgram(wechat(p.id).wx, { apiUrl: api });
    await client.login();
    const { code } = await postJSON(`${sandbox}/sandbox/people/${p.id}/phone-code`, {});
    const masked = '+****' + p.phone.slice(-4);
    const r = await client.verifyPhone(code);
    assert.equal(r.phone.masked, masked);
    assert.equal((await client.me()).phone.masked, masked);
    assert.ok(!JSON.stringify(await client.me()).includes(p.phone.slice(1)), 'the number itself never reaches the client');
    await assert.rejects(client.verifyPhone(code), (e) => e instanceof WxbridgeError && e.status === 400 && e.code === 'invalid_code');
  });

  test('consents: the object wx.requestSubscribeMessage resolved with is recorded; a failed one is refused, the session kept', async () => {
    const p = await person('Kit Consents');
    const { wx, seen } = wechat(p.id);
    const client = miniProgram(wx, { apiUrl: api });
    const result = { 'tpl-kit-order-shipped_0001': 'accept', 'tpl-kit-coupon_0002': 'reject', errMsg: 'requestSubscribeMessage:ok' };
    assert.deepEqual(await client.recordConsents(result), { recorded: 2 });
    await assert.rejects(client.recordConsents({ errMsg: 'requestSubscribeMessage:fail cancel' }),
      (e) => e instanceof WxbridgeError && e.status === 400 && e.code === 'invalid_request');
    assert.equal(seen.logins, 1);
    assert.equal(client.signedIn, true);
  });

  test('a call answered 503 (the table failing) is sent again after Retry-After, with the same session', async () => {
    const p = await person('Kit Table Down');
    const { wx, seen } = wechat(p.id);
    const waits = [];
    const client = miniProgram(wx, {
      apiUrl: api,
      // The table recovers while the kit waits.
      sleep: async (ms) => { waits.push(ms); await fetch(stack.url + '/_dev/faults', { method: 'DELETE' }); },
    });
    await client.login();
    await postJSON(stack.url + '/_dev/faults', { service: 'dynamodb', match: p.mp_openid, count: 0, error: 'InternalServerError' });
    assert.deepEqual(await client.recordConsents({ 'tpl-kit-restock_0004': 'accept', errMsg: 'requestSubscribeMessage:ok' }), { recorded: 1 });
    assert.deepEqual(waits, [2000]);
    assert.deepEqual(seen.requests.map((q) => q.path), ['/mp/login', '/mp/subscribe-consents', '/mp/subscribe-consents']);
    assert.equal(seen.logins, 1);
  });

  test('bindAccount: a login with the business binding token binds its external id', async () => {
    const p = await person('Kit Bind');
    const { wx, seen } = wechat(p.id);
    const client = miniProgram(wx, { apiUrl: api });
    await client.login();
    const member = newMember(); // the business's account id
    const r = await client.bindAccount(bindToken(await bindKey(), member, Date.now() + 10 * 60e3));
    assert.equal((await client.me()).external_id, member);
    assert.equal(seen.logins, 2, 'the binding login has its own code');
    assert.equal((await client.me()).uid, r.person.uid);
  });

  test('another mini program: the client built with its appid uses /mp/{appid}/…; an unknown appid is unknown_app', async () => {
    const mp2 = appsOf('mini_program').find((a) => !a.default && !a.unbound);
    const p = await person('Kit Second MP');
    const { wx, seen } = wechat(p.id, mp2.appid);
    const client = miniProgram(wx, { apiUrl: api, appid: mp2.appid });
    await client.recordConsents({ 'tpl-kit-second_0003': 'accept', errMsg: 'requestSubscribeMessage:ok' });
    assert.deepEqual(seen.requests.map((q) => q.path), [`/mp/${mp2.appid}/login`, `/mp/${mp2.appid}/subscribe-consents`]);
    assert.ok((await client.me()).identities.some((i) => i.appid === mp2.appid && i.openid === p.openids[mp2.appid]));
    const stray = miniProgram(wechat(p.id).wx, { apiUrl: api, appid: 'wx0000000000000000' });
    await assert.rejects(stray.login(), (e) => e instanceof WxbridgeError && e.status === 404 && e.code === 'unknown_app');
  });

  test('uni-app and Taro: request and login that answer with promises', async () => {
    const p = await person('Kit Taro');
    const { wx } = wechat(p.id);
    // Taro.request and uni.request resolve a promise (uni: [err, res]);
    // these call no callback at all.
    const promised = (f) => (o) => new Promise((resolve, reject) => f({ ...o, success: resolve, fail: reject }));
    const taro = { request: promised(wx.request), login: promised(wx.login) };
    const uni = {
      request: (o) => promised(wx.request)(o).then((res) => [null, res]),
      login: (o) => promised(wx.login)(o).then((res) => [null, res]),
    };
    for (const api_ of [taro, uni]) {
      const client = miniProgram(api_, { apiUrl: api });
      assert.match((await client.me()).uid, /\w/);
    }
  });
});

describe('H5', () => {
  const pageURL = () => config.h5_origin + '/_dev/h5?tab=orders';

  test('signIn → consent page → completeSignIn keeps the session and clears the fragment; me() answers', async () => {
    const p = await person('Kit H5');
    const page = browserPage(pageURL());
    const storage = memory();
    const kit = h5({ apiUrl: api, location: page.location, history: page.history, storage });
    assert.equal(kit.completeSignIn(), 'none');
    kit.signIn({ scope: 'snsapi_userinfo' });
    const [start] = page.location.assigned;
    assert.equal(start, `${api}/oauth/authorize?scope=snsapi_userinfo&return_to=${encodeURIComponent(pageURL())}`);
    page.arrive(await visit(start, pageURL(), { person: p.id }));
    assert.match(page.location.hash, /session=/);
    assert.equal(kit.completeSignIn(), 'signed_in');
    assert.equal(page.location.hash, '');
    assert.equal(page.location.href, pageURL());
    const me = await kit.me();
    assert.ok(me.identities.some((i) => i.kind === 'official_account' && i.appid === config.oa.appid && i.openid === p.oa_openid));
    // The next page of the site finds the session kept.
    const next = h5({ apiUrl: api, location: browserPage(pageURL()).location, history: page.history, storage });
    assert.equal(next.signedIn, true);
    assert.equal((await next.me()).uid, me.uid);
  });

  test('a refused consent comes back as access_denied, typed, with the fragment cleared', async () => {
    const page = browserPage(pageURL());
    const kit = h5({ apiUrl: api, location: page.location, history: page.history, storage: memory() });
    page.arrive(await visit(kit.signInURL({ scope: 'snsapi_userinfo' }), pageURL(), { refuse: '1' }));
    assert.throws(() => kit.completeSignIn(), (e) => e instanceof WxbridgeError && e.code === 'access_denied' && e.status === 0);
    assert.equal(page.location.hash, '');
    assert.equal(kit.signedIn, false);
  });

  test('website QR login through /web/authorize', async () => {
    const p = await person('Kit QR');
    const page = browserPage(pageURL());
    const kit = h5({ apiUrl: api, location: page.location, history: page.history, storage: memory() });
    const start = kit.signInURL({ website: true });
    assert.ok(start.startsWith(`${api}/web/authorize?return_to=`));
    page.arrive(await visit(start, pageURL(), { person: p.id }));
    assert.equal(kit.completeSignIn(), 'signed_in');
    const web = appsOf('website').find((a) => a.default);
    assert.ok((await kit.me()).identities.some((i) => i.kind === 'website' && i.appid === web.appid));
  });

  test('me() with a session wxbridge refuses: invalid_session, the session dropped', async () => {
    const page = browserPage(pageURL());
    const storage = memory({ 'wxbridge.h5session': held(retired(config.oa.appid), Date.now() + 86400e3) });
    const kit = h5({ apiUrl: api, location: page.location, history: page.history, storage });
    assert.equal(kit.signedIn, true);
    await assert.rejects(kit.me(), (e) => e instanceof WxbridgeError && e.status === 401 && e.code === 'invalid_session');
    assert.equal(kit.signedIn, false);
    assert.equal(storage.getItem('wxbridge.h5session'), null);
  });
});
