/**
 * The wxbridge client kit: the client side of wxbridge's login API for a
 * WeChat mini program (wx.request, or uni-app's and Taro's request, which
 * take the same options) and of its H5 sign-in for a browser page (fetch).
 * Plain ES2017, no dependencies.
 *
 * A mini program builds one Client per app start (miniProgram(wx, …)), an
 * H5 page one H5 (h5(…)). Every failure is a WxbridgeError carrying
 * wxbridge's `error` code.
 */
/** VERSION is the kit's version: its major version is the login API's. */
export const VERSION = "1.0.0";
/**
 * WxbridgeError is every failure the kit reports. code is wxbridge's
 * `error` code when wxbridge answered (README, "The login API"); else one
 * of the kit's: "network_error" (no answer), "login_failed" (wx.login
 * failed), "http_<status>" (an answer that is not wxbridge's: no code, or
 * no JSON, from a gateway or a captive portal in front), the error an H5
 * sign-in came back with ("access_denied", …) or "unexpected_session"
 * (completeSignIn). Status 0 with wxbridge's codes "invalid_request" (a
 * body that is not JSON) and "unknown_app" (no appid) is the kit refusing
 * before sending anything.
 */
export class WxbridgeError extends Error {
    constructor(status, code, message, retryAfter) {
        super(message);
        this.name = "WxbridgeError";
        this.status = status;
        this.code = code;
        if (retryAfter !== undefined)
            this.retryAfter = retryAfter;
    }
}
/** fetchTransport sends requests with fetch (a browser's, Node's, or f). */
export function fetchTransport(f) {
    const send = f || (typeof fetch === "function" ? fetch : undefined);
    if (!send)
        throw new Error("wxbridge: no fetch here: pass a transport");
    return async (req) => {
        const res = await send(req.url, { method: req.method, headers: req.headers, body: req.body });
        const text = await res.text();
        return { status: res.status, data: parseJSON(text), header: (name) => res.headers.get(name) || undefined };
    };
}
/**
 * requestTransport sends requests with a mini program's request function:
 * wx.request, uni.request or Taro.request (whose promise is followed when
 * it returns one).
 */
export function requestTransport(request) {
    return async (req) => {
        const res = await settle((ok, fail) => request({
            url: req.url,
            method: req.method,
            header: req.headers,
            data: req.body,
            dataType: "json",
            success: ok,
            fail: (err) => fail(new Error((err && err.errMsg) || "request failed")),
        }));
        const headers = res.header || {};
        return {
            status: res.statusCode,
            data: typeof res.data === "string" ? parseJSON(res.data) : res.data,
            header: (name) => headerOf(headers, name),
        };
    };
}
/** wxStorage keeps the session in a mini program's storage, across app starts. */
export function wxStorage(api) {
    return {
        getItem: (key) => {
            const v = api.getStorageSync(key);
            return typeof v === "string" && v !== "" ? v : null;
        },
        setItem: (key, value) => api.setStorageSync(key, value),
        removeItem: (key) => api.removeStorageSync(key),
    };
}
function memoryStorage() {
    const m = {};
    return {
        getItem: (key) => (Object.prototype.hasOwnProperty.call(m, key) ? m[key] : null),
        setItem: (key, value) => {
            m[key] = value;
        },
        removeItem: (key) => {
            delete m[key];
        },
    };
}
// A session this close to its expiry is not sent: it would expire on the way.
const expirySlackMs = 60 * 1000;
class Base {
    constructor(o, transport, storage, key) {
        this.loaded = false;
        if (!o.apiUrl)
            throw new Error("wxbridge: apiUrl is required");
        this.apiUrl = o.apiUrl.replace(/\/+$/, "");
        this.appid = checkAppID(o.appid);
        this.transport = transport;
        this.storage = storage;
        this.key = key + (this.appid ? "." + this.appid : "");
        this.retries = o.retries === undefined ? 2 : o.retries;
        this.maxRetryAfter = o.maxRetryAfter === undefined ? 10 : o.maxRetryAfter;
        this.sleep = o.sleep || ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
        this.now = o.now || Date.now;
    }
    /** signedIn says whether a session is held that has not expired. */
    get signedIn() {
        return this.current() !== undefined;
    }
    /** signOut forgets the session. */
    signOut() {
        const h = this.current();
        if (h)
            this.drop(h);
    }
    /** current is the session held, unless it has expired (then it is dropped). */
    current() {
        if (!this.loaded) {
            this.loaded = true;
            this.held = readHeld(this.storage, this.key);
        }
        const h = this.held;
        if (h && h.expiresAt - expirySlackMs <= this.now()) {
            this.drop(h);
            return undefined;
        }
        return h;
    }
    /**
     * expiry is when a session said to expire at `at` (ms) is dropped. A
     * device clock ahead of the server's would read a new session as
     * expired and log in on every call (or, on a page, sign in forever):
     * one that looks expired on arrival is kept for an hour.
     */
    expiry(at) {
        const now = this.now();
        return at - expirySlackMs > now ? at : now + 60 * 60 * 1000;
    }
    keep(h) {
        this.loaded = true;
        this.held = h;
        try {
            this.storage.setItem(this.key, JSON.stringify(h));
        }
        catch (e) {
            // A full or refused storage: the session still lasts this run.
        }
    }
    /** drop forgets h, unless another session has replaced it meanwhile. */
    drop(h) {
        if (this.held !== h)
            return;
        this.held = undefined;
        try {
            this.storage.removeItem(this.key);
        }
        catch (e) {
            // Nothing to do: the session is gone from memory.
        }
    }
    /** send calls wxbridge: the answer, whatever its status, or network_error. */
    async send(method, path, body, session) {
        const headers = {};
        // Only these two: the API's CORS configuration allows no other header.
        if (session)
            headers["Authorization"] = "Bearer " + session;
        if (body !== undefined)
            headers["Content-Type"] = "application/json";
        let json;
        try {
            json = body === undefined ? undefined : JSON.stringify(body);
        }
        catch (e) {
            // A cycle or a BigInt: the caller's to fix, and nothing was sent.
            throw new WxbridgeError(0, "invalid_request", "the body is not JSON: " + messageOf(e));
        }
        try {
            return await this.transport({ method, url: this.apiUrl + path, headers, body: json });
        }
        catch (e) {
            throw new WxbridgeError(0, "network_error", "wxbridge did not answer: " + messageOf(e));
        }
    }
    /**
     * retrying runs attempt until it succeeds or fails for good (pause).
     */
    async retrying(attempt) {
        for (let tries = 0;; tries++) {
            try {
                return await attempt();
            }
            catch (e) {
                if (!(await this.pause(e, tries)))
                    throw e;
            }
        }
    }
    /**
     * pause waits out a 503 or 429 (Retry-After seconds, 1 if unsaid) and
     * says to try again: at most `retries` times, and only for a wait within
     * maxRetryAfter. Any other failure is final: false, at once.
     */
    async pause(e, tries) {
        if (!(e instanceof WxbridgeError) || (e.status !== 503 && e.status !== 429))
            return false;
        const wait = e.retryAfter || 1;
        if (tries >= this.retries || wait > this.maxRetryAfter)
            return false;
        await this.sleep(wait * 1000);
        return true;
    }
}
/**
 * checkAppID returns appid ("" reads as none), or throws unknown_app for
 * one that is no appid: it is a path segment of the routes, where "..",
 * "." or an encoded "/" would name another route or app.
 */
function checkAppID(appid) {
    if (!appid)
        return undefined;
    if (typeof appid !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(appid)) {
        throw new WxbridgeError(0, "unknown_app", "not an appid: " + JSON.stringify(String(appid).slice(0, 64)));
    }
    return appid;
}
function readHeld(storage, key) {
    try {
        const raw = storage.getItem(key);
        const h = raw ? JSON.parse(raw) : undefined;
        return h && typeof h.session === "string" && typeof h.expiresAt === "number" ? h : undefined;
    }
    catch (e) {
        return undefined;
    }
}
/** failure is the WxbridgeError for an answer that is not 2xx. */
function failure(res) {
    const body = (res.data && typeof res.data === "object" ? res.data : {});
    const code = typeof body.error === "string" ? body.error : "http_" + res.status;
    const message = typeof body.message === "string" ? body.message : "wxbridge answered HTTP " + res.status;
    return new WxbridgeError(res.status, code, message, retryAfterOf(res.header("Retry-After")));
}
function ok(res) {
    return res.status >= 200 && res.status < 300;
}
/**
 * answer is a 2xx answer's body. wxbridge answers JSON objects: anything
 * else (a captive portal's or a proxy's HTML page answered 200) is not
 * its answer, and fails as http_<status>.
 */
function answer(res) {
    if (res.data && typeof res.data === "object" && !Array.isArray(res.data))
        return res.data;
    throw new WxbridgeError(res.status, "http_" + res.status, "the answer is not wxbridge's: no JSON object");
}
/**
 * retryAfterOf reads Retry-After: seconds, or an HTTP date ("Wed, 21 Oct
 * 2015 07:28:00 GMT"). Anything else is unsaid: Date.parse would read
 * "1.5" or "-5" as dates of 2001, a wait of 0.
 */
function retryAfterOf(v) {
    if (!v)
        return undefined;
    if (/^\s*\d+\s*$/.test(v))
        return parseInt(v, 10);
    if (!/[a-z]{3}/i.test(v))
        return undefined;
    const at = Date.parse(v);
    return isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}
/**
 * Client is a mini program's side of wxbridge: it logs in with wx.login
 * codes, keeps the session, sends it, and logs in again when wxbridge
 * refuses it. The routes are the default mini program's (/mp/login, …),
 * or /mp/{appid}/… when built with an appid.
 */
export class Client extends Base {
    constructor(o) {
        super(o, o.transport, o.storage || memoryStorage(), "wxbridge.session");
        this.code = o.code;
    }
    /**
     * login logs in, unless a session is held: call it once at app start.
     * Calls made while a login is under way share it (one wx.login, one
     * POST /mp/login).
     */
    async login() {
        const h = this.current();
        return resultOf(h && h.result ? h : await this.shared());
    }
    /**
     * bindAccount logs in again with the business's binding token
     * (README, "Binding a business account"): the person is then known by
     * the business's external id.
     */
    async bindAccount(bindToken) {
        return resultOf(await this.shared(bindToken));
    }
    /**
     * verifyPhone records the number the user verified with a getPhoneNumber
     * button: code is its event's detail.code. A code works once, so a 503 is
     * not retried: ask the user to tap again.
     */
    verifyPhone(code) {
        return this.authed("POST", this.path("phone"), { code }, false);
    }
    /** recordConsents reports what wx.requestSubscribeMessage resolved with. */
    recordConsents(result) {
        return this.authed("POST", this.path("subscribe-consents"), result, true);
    }
    /** me is GET /me: the person, every identity, the masked phone. */
    me() {
        return this.authed("GET", "/me", undefined, true);
    }
    path(route) {
        return "/mp/" + (this.appid ? encodeURIComponent(this.appid) + "/" : "") + route;
    }
    /**
     * authed sends a request with the session, logging in first when none is
     * held. An answer 401 drops the session, logs in again once (a new
     * wx.login code) and resends; a second 401 is the caller's. With retry,
     * a 503 is sent again (pause); a login retries its own.
     */
    async authed(method, path, body, retry) {
        let relogged = false;
        for (let tries = 0;;) {
            const h = this.current() || (await this.shared());
            const res = await this.send(method, path, body, h.session);
            if (ok(res))
                return answer(res);
            if (res.status === 401) {
                this.drop(h);
                if (!relogged) {
                    relogged = true;
                    continue;
                }
            }
            const err = failure(res);
            if (!retry || !(await this.pause(err, tries++)))
                throw err;
        }
    }
    /**
     * shared is the login under way, or a new one. A login with a binding
     * token waits for the one under way and then runs its own, which the
     * calls after it wait for.
     */
    shared(bindToken) {
        if (this.pending && !bindToken)
            return this.pending;
        const before = this.pending;
        const p = (async () => {
            if (before)
                await before.catch(() => undefined);
            return this.retrying(() => this.loginOnce(bindToken));
        })();
        this.pending = p;
        const done = () => {
            if (this.pending === p)
                this.pending = undefined;
        };
        p.then(done, done);
        return p;
    }
    /** loginOnce is one login with a new code: a code is never sent twice. */
    async loginOnce(bindToken) {
        let code;
        try {
            code = await this.code();
        }
        catch (e) {
            throw new WxbridgeError(0, "login_failed", "wx.login failed: " + messageOf(e));
        }
        const body = { code };
        if (bindToken)
            body.bind_token = bindToken;
        const res = await this.send("POST", this.path("login"), body);
        if (!ok(res))
            throw failure(res);
        const a = res.data;
        if (!a || typeof a.session !== "string")
            throw new WxbridgeError(res.status, "http_" + res.status, "the login answer has no session");
        const h = {
            session: a.session,
            expiresAt: this.expiry(Date.parse(a.expires_at) || 0),
            result: { person: a.person, unionid_known: a.unionid_known, expires_at: a.expires_at },
        };
        this.keep(h);
        return h;
    }
}
function resultOf(h) {
    return h.result;
}
/**
 * miniProgram builds the Client of a mini program from wx (or uni, or
 * Taro): wx.request to send, wx.login for codes.
 */
export function miniProgram(api, options) {
    return new Client({
        apiUrl: options.apiUrl,
        appid: options.appid,
        storage: options.storage,
        retries: options.retries,
        maxRetryAfter: options.maxRetryAfter,
        sleep: options.sleep,
        now: options.now,
        transport: requestTransport((o) => api.request(o)),
        code: async () => {
            const res = await settle((ok, fail) => api.login({ success: ok, fail: (err) => fail(new Error((err && err.errMsg) || "wx.login failed")) }));
            if (!res || !res.code)
                throw new Error("wx.login gave no code");
            return res.code;
        },
    });
}
/**
 * H5 is a page's side of wxbridge's H5 sign-in: it sends the browser
 * through the official account's web OAuth (or a website app's QR login),
 * takes the session from the fragment it comes back with, and calls GET
 * /me with it.
 */
export class H5 extends Base {
    constructor(o) {
        super(o, o.transport || fetchTransport(), o.storage || defaultWebStorage(), "wxbridge.h5session");
        this.loc = o.location || (typeof location !== "undefined" ? location : undefined);
        this.hist = o.history || (typeof history !== "undefined" ? history : undefined);
    }
    /**
     * signInURL is where signIn sends the browser. A page that links to it
     * instead of calling signIn has started a sign-in all the same: the
     * session it comes back with is accepted (completeSignIn).
     */
    signInURL(o = {}) {
        const appid = checkAppID(o.appid) || this.appid;
        const path = (o.website ? "/web" : "/oauth") + (appid ? "/" + encodeURIComponent(appid) : "") + "/authorize";
        // wxbridge puts the outcome in the fragment and refuses a return_to
        // that has one: a page's own fragment (location.href) is dropped.
        const returnTo = (o.returnTo || this.location().href).split("#")[0];
        this.begin(originOf(returnTo) || originOf(this.location().href));
        return (this.apiUrl + path + "?" + (o.scope ? "scope=" + encodeURIComponent(o.scope) + "&" : "") + "return_to=" + encodeURIComponent(returnTo));
    }
    /** signIn sends the browser to sign in; it comes back to returnTo. */
    signIn(o = {}) {
        this.location().assign(this.signInURL(o));
    }
    /**
     * completeSignIn reads a sign-in's outcome from the fragment and removes
     * it from the address bar (history.replaceState), keeping the session.
     * A sign-in that failed throws a WxbridgeError with the fragment's error
     * (status 0): access_denied, invalid_code, temporarily_unavailable,
     * server_error (also for an outcome that does not read). A session is
     * kept only when this kit started a sign-in (signIn, signInURL) back to
     * this page's origin: anything else is a link carrying someone else's
     * session (a login CSRF), refused as unexpected_session.
     */
    completeSignIn() {
        const loc = this.location();
        const f = parseQuery(loc.hash.replace(/^#/, ""));
        if (!("session" in f || "error" in f || "snapshot" in f))
            return "none";
        // First, whatever follows: the session must not stay in the address
        // bar, the history or a bookmark.
        const here = loc.href.split("#")[0];
        let cleared = false;
        try {
            // The whole address: a path of "//host/…" alone reads as another
            // origin's, which replaceState refuses.
            if (this.hist)
                this.hist.replaceState(this.hist.state, "", here);
            cleared = !!this.hist;
        }
        catch (e) {
            // A history that refuses: the hash, as without one.
        }
        if (!cleared)
            loc.hash = "";
        const started = this.started();
        if ("error" in f || !(f.session || f.snapshot)) {
            throw new WxbridgeError(0, f.error || "server_error", "the sign-in came back with " + (f.error || "no outcome it can read"));
        }
        if (!f.session)
            return "snapshot";
        if (!started || started !== originOf(here)) {
            throw new WxbridgeError(0, "unexpected_session", "a session this page did not ask for is refused: call signIn");
        }
        this.keep({ session: f.session, expiresAt: this.expiry(Number(f.expires_at) * 1000 || 0) });
        return "signed_in";
    }
    /**
     * me is GET /me. Without a session, or when wxbridge refuses it (the
     * session is then dropped), it throws invalid_session: sign in again.
     */
    me() {
        return this.retrying(async () => {
            const h = this.current();
            if (!h)
                throw new WxbridgeError(401, "invalid_session", "not signed in: call signIn");
            const res = await this.send("GET", "/me", undefined, h.session);
            if (ok(res))
                return answer(res);
            if (res.status === 401)
                this.drop(h);
            throw failure(res);
        });
    }
    location() {
        if (!this.loc)
            throw new Error("wxbridge: no location here: pass one");
        return this.loc;
    }
    /** begin records that a sign-in began that comes back to origin. */
    begin(origin) {
        try {
            if (origin)
                this.storage.setItem(this.key + ".started", origin);
        }
        catch (e) {
            // A refused storage: the sign-in's session will be refused too.
        }
    }
    /** started is the origin a sign-in began for, forgotten as it is read. */
    started() {
        try {
            const origin = this.storage.getItem(this.key + ".started") || undefined;
            this.storage.removeItem(this.key + ".started");
            return origin;
        }
        catch (e) {
            return undefined;
        }
    }
}
function defaultWebStorage() {
    try {
        if (typeof sessionStorage !== "undefined" && sessionStorage)
            return sessionStorage;
    }
    catch (e) {
        // Storage refused (a sandboxed frame): keep the session in memory.
    }
    return memoryStorage();
}
/** h5 builds the H5 client of this page: fetch, location, history, sessionStorage. */
export function h5(options) {
    return new H5(options);
}
// ---- helpers
/**
 * settle runs a call that answers through success and fail callbacks, or
 * through a promise it returns (uni-app's and Taro's promise styles; uni's
 * [err, res] pairs too), whichever comes first.
 */
function settle(call) {
    return new Promise((resolve, reject) => {
        let done = false;
        const ok = (v) => {
            if (!done) {
                done = true;
                resolve(v);
            }
        };
        const fail = (e) => {
            if (!done) {
                done = true;
                reject(e);
            }
        };
        let ret;
        try {
            ret = call(ok, fail);
        }
        catch (e) {
            fail(e);
            return;
        }
        if (ret && typeof ret.then === "function") {
            ret.then((v) => (Array.isArray(v) && v.length === 2 ? (v[0] ? fail(v[0]) : ok(v[1])) : ok(v)), (e) => fail(e));
        }
    });
}
function parseJSON(text) {
    try {
        return JSON.parse(text);
    }
    catch (e) {
        return text;
    }
}
function headerOf(headers, name) {
    const want = name.toLowerCase();
    for (const k of Object.keys(headers)) {
        if (k.toLowerCase() === want)
            return headers[k];
    }
    return undefined;
}
/** parseQuery reads a query or fragment; a value that does not decode reads as "". */
function parseQuery(q) {
    const out = Object.create(null);
    for (const part of q.split("&")) {
        if (!part)
            continue;
        const i = part.indexOf("=");
        const k = decoded(i < 0 ? part : part.slice(0, i));
        if (k !== undefined)
            out[k] = decoded(i < 0 ? "" : part.slice(i + 1)) || "";
    }
    return out;
}
function decoded(s) {
    try {
        return decodeURIComponent(s.replace(/\+/g, " "));
    }
    catch (e) {
        return undefined;
    }
}
/** originOf is an absolute URL's scheme and host, lowercased; undefined for another. */
function originOf(url) {
    const m = /^([a-z][a-z0-9+.-]*:\/\/[^/?#]*)/i.exec(url);
    return m ? m[1].toLowerCase() : undefined;
}
function messageOf(e) {
    return e instanceof Error ? e.message : String(e);
}
