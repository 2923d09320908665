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
  /** The HTTP status; 0 when no HTTP answer is behind the error. */
  readonly status: number;
  readonly code: string;
  /** Seconds to wait before trying again (Retry-After), when told. */
  readonly retryAfter?: number;

  constructor(status: number, code: string, message: string, retryAfter?: number) {
    super(message);
    this.name = "WxbridgeError";
    this.status = status;
    this.code = code;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

// ---- what wxbridge answers (README, "The login API")

/** Person is what a client learns about its own person at login. */
export interface Person {
  uid: string;
  linked: boolean;
  follows_oa: boolean;
}

/** LoginResult is a login's answer, without the session the kit keeps. */
export interface LoginResult {
  person: Person;
  unionid_known: boolean;
  expires_at: string;
}

/** Phone is a verified number as wxbridge shows it: masked. */
export interface Phone {
  masked: string;
  verified_at: string;
}

/** Identity is the person's identity in one app. */
export interface Identity {
  kind: "mini_program" | "official_account" | "website" | "mobile";
  appid: string;
  openid: string;
  first_seen: string;
  subscribed?: boolean;
  subscribed_at?: string;
  unsubscribed_at?: string;
}

/** Me is GET /me's answer. */
export interface Me extends Person {
  identities: Identity[];
  unionid_known: boolean;
  external_id?: string;
  phone?: Phone;
  mini_program?: Identity;
  official_account?: Identity;
}

/**
 * SubscribeResult is the object wx.requestSubscribeMessage resolves with:
 * each template id's answer ("accept", "reject", "ban", "filter") and
 * errMsg.
 */
export interface SubscribeResult {
  [templateIdOrErrMsg: string]: string | number | undefined;
}

// ---- transports

/** HttpRequest is one call to wxbridge. */
export interface HttpRequest {
  method: "GET" | "POST";
  url: string;
  headers: { [name: string]: string };
  body?: string;
}

/** HttpResponse is wxbridge's answer: data is the parsed JSON body. */
export interface HttpResponse {
  status: number;
  data: unknown;
  /** header returns a response header by name, any case. */
  header(name: string): string | undefined;
}

/** Transport sends a request; it rejects only when no answer came. */
export type Transport = (req: HttpRequest) => Promise<HttpResponse>;

/** FetchLike is the part of fetch the kit uses. */
export type FetchLike = (
  url: string,
  init: { method: string; headers: { [name: string]: string }; body?: string },
) => Promise<{ status: number; headers: { get(name: string): string | null }; text(): Promise<string> }>;

/** RequestOptions are what wx.request, uni.request and Taro.request take. */
export interface RequestOptions {
  url: string;
  method: "GET" | "POST";
  header: { [name: string]: string };
  data?: string;
  dataType: "json";
  success(res: { statusCode: number; data: unknown; header?: { [name: string]: string } }): void;
  fail(err: { errMsg?: string }): void;
}

/** RequestFunction is wx.request, uni.request or Taro.request. */
export type RequestFunction = (options: RequestOptions) => unknown;

// The globals the kit may find: a mini program has none of fetch,
// location, history and sessionStorage, a page all of them.
declare const fetch: FetchLike | undefined;
declare function setTimeout(f: () => void, ms: number): unknown;

/** fetchTransport sends requests with fetch (a browser's, Node's, or f). */
export function fetchTransport(f?: FetchLike): Transport {
  const send = f || (typeof fetch === "function" ? fetch : undefined);
  if (!send) throw new Error("wxbridge: no fetch here: pass a transport");
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
export function requestTransport(request: RequestFunction): Transport {
  return async (req) => {
    const res = await settle<Parameters<RequestOptions["success"]>[0]>((ok, fail) =>
      request({
        url: req.url,
        method: req.method,
        header: req.headers,
        data: req.body,
        dataType: "json",
        success: ok,
        fail: (err) => fail(new Error((err && err.errMsg) || "request failed")),
      }),
    );
    const headers = res.header || {};
    return {
      status: res.statusCode,
      data: typeof res.data === "string" ? parseJSON(res.data) : res.data,
      header: (name) => headerOf(headers, name),
    };
  };
}

// ---- storage

/** StorageLike keeps the session: sessionStorage, localStorage, wxStorage(wx). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** WxStorageAPI is wx's (or uni's, or Taro's) synchronous storage. */
export interface WxStorageAPI {
  getStorageSync(key: string): unknown;
  setStorageSync(key: string, value: string): void;
  removeStorageSync(key: string): void;
}

/** wxStorage keeps the session in a mini program's storage, across app starts. */
export function wxStorage(api: WxStorageAPI): StorageLike {
  return {
    getItem: (key) => {
      const v = api.getStorageSync(key);
      return typeof v === "string" && v !== "" ? v : null;
    },
    setItem: (key, value) => api.setStorageSync(key, value),
    removeItem: (key) => api.removeStorageSync(key),
  };
}

function memoryStorage(): StorageLike {
  const m: { [key: string]: string } = {};
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

// ---- what both clients share

/** CommonOptions are the options of both clients. */
export interface CommonOptions {
  /** The API's base URL: the stack's PublicUrl (or ApiUrl), no trailing slash needed. */
  apiUrl: string;
  /** An app other than its kind's default: its routes carry the appid. */
  appid?: string;
  /** Where the session is kept; the mini program's default lasts the app run. */
  storage?: StorageLike;
  /** How many times a 503 (or 429) is retried; 2 unless set. */
  retries?: number;
  /** The longest Retry-After waited for, in seconds (10): a longer one fails at once. */
  maxRetryAfter?: number;
  /** How the kit waits before a retry (setTimeout unless set). */
  sleep?: (ms: number) => Promise<void>;
  /** The clock a session's expiry is read with (Date.now unless set). */
  now?: () => number;
}

/** Held is a session with what its login said. */
interface Held {
  session: string;
  expiresAt: number; // ms since the epoch
  result?: LoginResult;
}

// A session this close to its expiry is not sent: it would expire on the way.
const expirySlackMs = 60 * 1000;

abstract class Base {
  protected readonly apiUrl: string;
  protected readonly appid?: string;
  private readonly transport: Transport;
  protected readonly storage: StorageLike;
  protected readonly key: string;
  private readonly retries: number;
  private readonly maxRetryAfter: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;
  private held?: Held;
  private loaded = false;

  constructor(o: CommonOptions, transport: Transport, storage: StorageLike, key: string) {
    if (!o.apiUrl) throw new Error("wxbridge: apiUrl is required");
    this.apiUrl = o.apiUrl.replace(/\/+$/, "");
    this.appid = checkAppID(o.appid);
    this.transport = transport;
    this.storage = storage;
    this.key = key + (this.appid ? "." + this.appid : "");
    this.retries = o.retries === undefined ? 2 : o.retries;
    this.maxRetryAfter = o.maxRetryAfter === undefined ? 10 : o.maxRetryAfter;
    this.sleep = o.sleep || ((ms) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
    this.now = o.now || Date.now;
  }

  /** signedIn says whether a session is held that has not expired. */
  get signedIn(): boolean {
    return this.current() !== undefined;
  }

  /** signOut forgets the session. */
  signOut(): void {
    const h = this.current();
    if (h) this.drop(h);
  }

  /** current is the session held, unless it has expired (then it is dropped). */
  protected current(): Held | undefined {
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
  protected expiry(at: number): number {
    const now = this.now();
    return at - expirySlackMs > now ? at : now + 60 * 60 * 1000;
  }

  protected keep(h: Held): void {
    this.loaded = true;
    this.held = h;
    try {
      this.storage.setItem(this.key, JSON.stringify(h));
    } catch (e) {
      // A full or refused storage: the session still lasts this run.
    }
  }

  /** drop forgets h, unless another session has replaced it meanwhile. */
  protected drop(h: Held): void {
    if (this.held !== h) return;
    this.held = undefined;
    try {
      this.storage.removeItem(this.key);
    } catch (e) {
      // Nothing to do: the session is gone from memory.
    }
  }

  /** send calls wxbridge: the answer, whatever its status, or network_error. */
  protected async send(method: "GET" | "POST", path: string, body?: unknown, session?: string): Promise<HttpResponse> {
    const headers: { [name: string]: string } = {};
    // Only these two: the API's CORS configuration allows no other header.
    if (session) headers["Authorization"] = "Bearer " + session;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let json: string | undefined;
    try {
      json = body === undefined ? undefined : JSON.stringify(body);
    } catch (e) {
      // A cycle or a BigInt: the caller's to fix, and nothing was sent.
      throw new WxbridgeError(0, "invalid_request", "the body is not JSON: " + messageOf(e));
    }
    try {
      return await this.transport({ method, url: this.apiUrl + path, headers, body: json });
    } catch (e) {
      throw new WxbridgeError(0, "network_error", "wxbridge did not answer: " + messageOf(e));
    }
  }

  /**
   * retrying runs attempt until it succeeds or fails for good (pause).
   */
  protected async retrying<T>(attempt: () => Promise<T>): Promise<T> {
    for (let tries = 0; ; tries++) {
      try {
        return await attempt();
      } catch (e) {
        if (!(await this.pause(e, tries))) throw e;
      }
    }
  }

  /**
   * pause waits out a 503 or 429 (Retry-After seconds, 1 if unsaid) and
   * says to try again: at most `retries` times, and only for a wait within
   * maxRetryAfter. Any other failure is final: false, at once.
   */
  protected async pause(e: unknown, tries: number): Promise<boolean> {
    if (!(e instanceof WxbridgeError) || (e.status !== 503 && e.status !== 429)) return false;
    const wait = e.retryAfter || 1;
    if (tries >= this.retries || wait > this.maxRetryAfter) return false;
    await this.sleep(wait * 1000);
    return true;
  }
}

/**
 * checkAppID returns appid ("" reads as none), or throws unknown_app for
 * one that is no appid: it is a path segment of the routes, where "..",
 * "." or an encoded "/" would name another route or app.
 */
function checkAppID(appid: string | undefined): string | undefined {
  if (!appid) return undefined;
  if (typeof appid !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(appid)) {
    throw new WxbridgeError(0, "unknown_app", "not an appid: " + JSON.stringify(String(appid).slice(0, 64)));
  }
  return appid;
}

function readHeld(storage: StorageLike, key: string): Held | undefined {
  try {
    const raw = storage.getItem(key);
    const h = raw ? JSON.parse(raw) : undefined;
    return h && typeof h.session === "string" && typeof h.expiresAt === "number" ? h : undefined;
  } catch (e) {
    return undefined;
  }
}

/** failure is the WxbridgeError for an answer that is not 2xx. */
function failure(res: HttpResponse): WxbridgeError {
  const body = (res.data && typeof res.data === "object" ? res.data : {}) as { error?: unknown; message?: unknown };
  const code = typeof body.error === "string" ? body.error : "http_" + res.status;
  const message = typeof body.message === "string" ? body.message : "wxbridge answered HTTP " + res.status;
  return new WxbridgeError(res.status, code, message, retryAfterOf(res.header("Retry-After")));
}

function ok(res: HttpResponse): boolean {
  return res.status >= 200 && res.status < 300;
}

/**
 * answer is a 2xx answer's body. wxbridge answers JSON objects: anything
 * else (a captive portal's or a proxy's HTML page answered 200) is not
 * its answer, and fails as http_<status>.
 */
function answer(res: HttpResponse): unknown {
  if (res.data && typeof res.data === "object" && !Array.isArray(res.data)) return res.data;
  throw new WxbridgeError(res.status, "http_" + res.status, "the answer is not wxbridge's: no JSON object");
}

/**
 * retryAfterOf reads Retry-After: seconds, or an HTTP date ("Wed, 21 Oct
 * 2015 07:28:00 GMT"). Anything else is unsaid: Date.parse would read
 * "1.5" or "-5" as dates of 2001, a wait of 0.
 */
function retryAfterOf(v: string | undefined): number | undefined {
  if (!v) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return parseInt(v, 10);
  if (!/[a-z]{3}/i.test(v)) return undefined;
  const at = Date.parse(v);
  return isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

// ---- the mini program

/** ClientOptions build a Client from parts; miniProgram(wx, …) is the usual way. */
export interface ClientOptions extends CommonOptions {
  transport: Transport;
  /** code gets a new login code: wx.login's. Each login asks for its own. */
  code: () => Promise<string>;
}

/**
 * Client is a mini program's side of wxbridge: it logs in with wx.login
 * codes, keeps the session, sends it, and logs in again when wxbridge
 * refuses it. The routes are the default mini program's (/mp/login, …),
 * or /mp/{appid}/… when built with an appid.
 */
export class Client extends Base {
  private readonly code: () => Promise<string>;
  private pending?: Promise<Held>;

  constructor(o: ClientOptions) {
    super(o, o.transport, o.storage || memoryStorage(), "wxbridge.session");
    this.code = o.code;
  }

  /**
   * login logs in, unless a session is held: call it once at app start.
   * Calls made while a login is under way share it (one wx.login, one
   * POST /mp/login).
   */
  async login(): Promise<LoginResult> {
    const h = this.current();
    return resultOf(h && h.result ? h : await this.shared());
  }

  /**
   * bindAccount logs in again with the business's binding token
   * (README, "Binding a business account"): the person is then known by
   * the business's external id.
   */
  async bindAccount(bindToken: string): Promise<LoginResult> {
    return resultOf(await this.shared(bindToken));
  }

  /**
   * verifyPhone records the number the user verified with a getPhoneNumber
   * button: code is its event's detail.code. A code works once, so a 503 is
   * not retried: ask the user to tap again.
   */
  verifyPhone(code: string): Promise<{ phone: Phone }> {
    return this.authed("POST", this.path("phone"), { code }, false) as Promise<{ phone: Phone }>;
  }

  /** recordConsents reports what wx.requestSubscribeMessage resolved with. */
  recordConsents(result: SubscribeResult): Promise<{ recorded: number }> {
    return this.authed("POST", this.path("subscribe-consents"), result, true) as Promise<{ recorded: number }>;
  }

  /** me is GET /me: the person, every identity, the masked phone. */
  me(): Promise<Me> {
    return this.authed("GET", "/me", undefined, true) as Promise<Me>;
  }

  private path(route: string): string {
    return "/mp/" + (this.appid ? encodeURIComponent(this.appid) + "/" : "") + route;
  }

  /**
   * authed sends a request with the session, logging in first when none is
   * held. An answer 401 drops the session, logs in again once (a new
   * wx.login code) and resends; a second 401 is the caller's. With retry,
   * a 503 is sent again (pause); a login retries its own.
   */
  private async authed(method: "GET" | "POST", path: string, body: unknown, retry: boolean): Promise<unknown> {
    let relogged = false;
    for (let tries = 0; ; ) {
      const h = this.current() || (await this.shared());
      const res = await this.send(method, path, body, h.session);
      if (ok(res)) return answer(res);
      if (res.status === 401) {
        this.drop(h);
        if (!relogged) {
          relogged = true;
          continue;
        }
      }
      const err = failure(res);
      if (!retry || !(await this.pause(err, tries++))) throw err;
    }
  }

  /**
   * shared is the login under way, or a new one. A login with a binding
   * token waits for the one under way and then runs its own, which the
   * calls after it wait for.
   */
  private shared(bindToken?: string): Promise<Held> {
    if (this.pending && !bindToken) return this.pending;
    const before = this.pending;
    const p = (async () => {
      if (before) await before.catch(() => undefined);
      return this.retrying(() => this.loginOnce(bindToken));
    })();
    this.pending = p;
    const done = () => {
      if (this.pending === p) this.pending = undefined;
    };
    p.then(done, done);
    return p;
  }

  /** loginOnce is one login with a new code: a code is never sent twice. */
  private async loginOnce(bindToken?: string): Promise<Held> {
    let code: string;
    try {
      code = await this.code();
    } catch (e) {
      throw new WxbridgeError(0, "login_failed", "wx.login failed: " + messageOf(e));
    }
    const body: { code: string; bind_token?: string } = { code };
    if (bindToken) body.bind_token = bindToken;
    const res = await this.send("POST", this.path("login"), body);
    if (!ok(res)) throw failure(res);
    const a = res.data as LoginResult & { session: string };
    if (!a || typeof a.session !== "string") throw new WxbridgeError(res.status, "http_" + res.status, "the login answer has no session");
    const h: Held = {
      session: a.session,
      expiresAt: this.expiry(Date.parse(a.expires_at) || 0),
      result: { person: a.person, unionid_known: a.unionid_known, expires_at: a.expires_at },
    };
    this.keep(h);
    return h;
  }
}

function resultOf(h: Held): LoginResult {
  return h.result as LoginResult;
}

/** MiniProgramAPI is the part of wx (or uni, or Taro) the kit uses. */
export interface MiniProgramAPI {
  request: RequestFunction;
  login(options: { success(res: { code?: string }): void; fail(err: { errMsg?: string }): void }): unknown;
}

/** MiniProgramOptions are a mini program client's options. */
export type MiniProgramOptions = CommonOptions;

/**
 * miniProgram builds the Client of a mini program from wx (or uni, or
 * Taro): wx.request to send, wx.login for codes.
 */
export function miniProgram(api: MiniProgramAPI, options: MiniProgramOptions): Client {
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
      const res = await settle<{ code?: string }>((ok, fail) =>
        api.login({ success: ok, fail: (err) => fail(new Error((err && err.errMsg) || "wx.login failed")) }),
      );
      if (!res || !res.code) throw new Error("wx.login gave no code");
      return res.code;
    },
  });
}

// ---- the H5 page

/** LocationLike is the part of window.location the kit uses. */
export interface LocationLike {
  href: string;
  hash: string;
  pathname: string;
  search: string;
  assign(url: string): void;
}

/** HistoryLike is the part of window.history the kit uses. */
export interface HistoryLike {
  state: unknown;
  replaceState(data: unknown, unused: string, url?: string): void;
}

/** H5Options are an H5 page's options; the defaults are the page's own. */
export interface H5Options extends CommonOptions {
  transport?: Transport;
  location?: LocationLike;
  history?: HistoryLike;
}

/** SignInOptions say how to sign in. */
export interface SignInOptions {
  /** snsapi_base (silent, the default) or snsapi_userinfo (consent, unionid). */
  scope?: string;
  /** The page to come back to; this page (without its fragment) unless set. */
  returnTo?: string;
  /** An official account (or website app) other than the default. */
  appid?: string;
  /** A website app's QR login (/web/authorize) instead of the official account's OAuth. */
  website?: boolean;
}

/** SignInOutcome is what completeSignIn found in the fragment. */
export type SignInOutcome = "signed_in" | "snapshot" | "none";

declare const location: LocationLike | undefined;
declare const history: HistoryLike | undefined;
declare const sessionStorage: StorageLike | undefined;

/**
 * H5 is a page's side of wxbridge's H5 sign-in: it sends the browser
 * through the official account's web OAuth (or a website app's QR login),
 * takes the session from the fragment it comes back with, and calls GET
 * /me with it.
 */
export class H5 extends Base {
  private readonly loc?: LocationLike;
  private readonly hist?: HistoryLike;

  constructor(o: H5Options) {
    super(o, o.transport || fetchTransport(), o.storage || defaultWebStorage(), "wxbridge.h5session");
    this.loc = o.location || (typeof location !== "undefined" ? location : undefined);
    this.hist = o.history || (typeof history !== "undefined" ? history : undefined);
  }

  /**
   * signInURL is where signIn sends the browser. A page that links to it
   * instead of calling signIn has started a sign-in all the same: the
   * session it comes back with is accepted (completeSignIn).
   */
  signInURL(o: SignInOptions = {}): string {
    const appid = checkAppID(o.appid) || this.appid;
    const path = (o.website ? "/web" : "/oauth") + (appid ? "/" + encodeURIComponent(appid) : "") + "/authorize";
    // wxbridge puts the outcome in the fragment and refuses a return_to
    // that has one: a page's own fragment (location.href) is dropped.
    const returnTo = (o.returnTo || this.location().href).split("#")[0];
    this.begin(originOf(returnTo) || originOf(this.location().href));
    return (
      this.apiUrl + path + "?" + (o.scope ? "scope=" + encodeURIComponent(o.scope) + "&" : "") + "return_to=" + encodeURIComponent(returnTo)
    );
  }

  /** signIn sends the browser to sign in; it comes back to returnTo. */
  signIn(o: SignInOptions = {}): void {
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
  completeSignIn(): SignInOutcome {
    const loc = this.location();
    const f = parseQuery(loc.hash.replace(/^#/, ""));
    if (!("session" in f || "error" in f || "snapshot" in f)) return "none";
    // First, whatever follows: the session must not stay in the address
    // bar, the history or a bookmark.
    const here = loc.href.split("#")[0];
    let cleared = false;
    try {
      // The whole address: a path of "//host/…" alone reads as another
      // origin's, which replaceState refuses.
      if (this.hist) this.hist.replaceState(this.hist.state, "", here);
      cleared = !!this.hist;
    } catch (e) {
      // A history that refuses: the hash, as without one.
    }
    if (!cleared) loc.hash = "";
    const started = this.started();
    if ("error" in f || !(f.session || f.snapshot)) {
      throw new WxbridgeError(0, f.error || "server_error", "the sign-in came back with " + (f.error || "no outcome it can read"));
    }
    if (!f.session) return "snapshot";
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
  me(): Promise<Me> {
    return this.retrying(async () => {
      const h = this.current();
      if (!h) throw new WxbridgeError(401, "invalid_session", "not signed in: call signIn");
      const res = await this.send("GET", "/me", undefined, h.session);
      if (ok(res)) return answer(res) as Me;
      if (res.status === 401) this.drop(h);
      throw failure(res);
    });
  }

  private location(): LocationLike {
    if (!this.loc) throw new Error("wxbridge: no location here: pass one");
    return this.loc;
  }

  /** begin records that a sign-in began that comes back to origin. */
  private begin(origin: string | undefined): void {
    try {
      if (origin) this.storage.setItem(this.key + ".started", origin);
    } catch (e) {
      // A refused storage: the sign-in's session will be refused too.
    }
  }

  /** started is the origin a sign-in began for, forgotten as it is read. */
  private started(): string | undefined {
    try {
      const origin = this.storage.getItem(this.key + ".started") || undefined;
      this.storage.removeItem(this.key + ".started");
      return origin;
    } catch (e) {
      return undefined;
    }
  }
}

function defaultWebStorage(): StorageLike {
  try {
    if (typeof sessionStorage !== "undefined" && sessionStorage) return sessionStorage;
  } catch (e) {
    // Storage refused (a sandboxed frame): keep the session in memory.
  }
  return memoryStorage();
}

/** h5 builds the H5 client of this page: fetch, location, history, sessionStorage. */
export function h5(options: H5Options): H5 {
  return new H5(options);
}

// ---- helpers

/**
 * settle runs a call that answers through success and fail callbacks, or
 * through a promise it returns (uni-app's and Taro's promise styles; uni's
 * [err, res] pairs too), whichever comes first.
 */
function settle<T>(call: (ok: (v: T) => void, fail: (e: unknown) => void) => unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const ok = (v: T) => {
      if (!done) {
        done = true;
        resolve(v);
      }
    };
    const fail = (e: unknown) => {
      if (!done) {
        done = true;
        reject(e);
      }
    };
    let ret: unknown;
    try {
      ret = call(ok, fail);
    } catch (e) {
      fail(e);
      return;
    }
    if (ret && typeof (ret as { then?: unknown }).then === "function") {
      (ret as Promise<unknown>).then(
        (v) => (Array.isArray(v) && v.length === 2 ? (v[0] ? fail(v[0]) : ok(v[1] as T)) : ok(v as T)),
        (e) => fail(e),
      );
    }
  });
}

function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    return text;
  }
}

function headerOf(headers: { [name: string]: string }, name: string): string | undefined {
  const want = name.toLowerCase();
  for (const k of Object.keys(headers)) {
    if (k.toLowerCase() === want) return headers[k];
  }
  return undefined;
}

/** parseQuery reads a query or fragment; a value that does not decode reads as "". */
function parseQuery(q: string): { [key: string]: string } {
  const out: { [key: string]: string } = Object.create(null);
  for (const part of q.split("&")) {
    if (!part) continue;
    const i = part.indexOf("=");
    const k = decoded(i < 0 ? part : part.slice(0, i));
    if (k !== undefined) out[k] = decoded(i < 0 ? "" : part.slice(i + 1)) || "";
  }
  return out;
}

function decoded(s: string): string | undefined {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch (e) {
    return undefined;
  }
}

/** originOf is an absolute URL's scheme and host, lowercased; undefined for another. */
function originOf(url: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*:\/\/[^/?#]*)/i.exec(url);
  return m ? m[1].toLowerCase() : undefined;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
