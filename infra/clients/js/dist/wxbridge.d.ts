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
export declare const VERSION = "1.0.0";
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
export declare class WxbridgeError extends Error {
    /** The HTTP status; 0 when no HTTP answer is behind the error. */
    readonly status: number;
    readonly code: string;
    /** Seconds to wait before trying again (Retry-After), when told. */
    readonly retryAfter?: number;
    constructor(status: number, code: string, message: string, retryAfter?: number);
}
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
/** HttpRequest is one call to wxbridge. */
export interface HttpRequest {
    method: "GET" | "POST";
    url: string;
    headers: {
        [name: string]: string;
    };
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
export type FetchLike = (url: string, init: {
    method: string;
    headers: {
        [name: string]: string;
    };
    body?: string;
}) => Promise<{
    status: number;
    headers: {
        get(name: string): string | null;
    };
    text(): Promise<string>;
}>;
/** RequestOptions are what wx.request, uni.request and Taro.request take. */
export interface RequestOptions {
    url: string;
    method: "GET" | "POST";
    header: {
        [name: string]: string;
    };
    data?: string;
    dataType: "json";
    success(res: {
        statusCode: number;
        data: unknown;
        header?: {
            [name: string]: string;
        };
    }): void;
    fail(err: {
        errMsg?: string;
    }): void;
}
/** RequestFunction is wx.request, uni.request or Taro.request. */
export type RequestFunction = (options: RequestOptions) => unknown;
/** fetchTransport sends requests with fetch (a browser's, Node's, or f). */
export declare function fetchTransport(f?: FetchLike): Transport;
/**
 * requestTransport sends requests with a mini program's request function:
 * wx.request, uni.request or Taro.request (whose promise is followed when
 * it returns one).
 */
export declare function requestTransport(request: RequestFunction): Transport;
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
export declare function wxStorage(api: WxStorageAPI): StorageLike;
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
    expiresAt: number;
    result?: LoginResult;
}
declare abstract class Base {
    protected readonly apiUrl: string;
    protected readonly appid?: string;
    private readonly transport;
    protected readonly storage: StorageLike;
    protected readonly key: string;
    private readonly retries;
    private readonly maxRetryAfter;
    private readonly sleep;
    private readonly now;
    private held?;
    private loaded;
    constructor(o: CommonOptions, transport: Transport, storage: StorageLike, key: string);
    /** signedIn says whether a session is held that has not expired. */
    get signedIn(): boolean;
    /** signOut forgets the session. */
    signOut(): void;
    /** current is the session held, unless it has expired (then it is dropped). */
    protected current(): Held | undefined;
    /**
     * expiry is when a session said to expire at `at` (ms) is dropped. A
     * device clock ahead of the server's would read a new session as
     * expired and log in on every call (or, on a page, sign in forever):
     * one that looks expired on arrival is kept for an hour.
     */
    protected expiry(at: number): number;
    protected keep(h: Held): void;
    /** drop forgets h, unless another session has replaced it meanwhile. */
    protected drop(h: Held): void;
    /** send calls wxbridge: the answer, whatever its status, or network_error. */
    protected send(method: "GET" | "POST", path: string, body?: unknown, session?: string): Promise<HttpResponse>;
    /**
     * retrying runs attempt until it succeeds or fails for good (pause).
     */
    protected retrying<T>(attempt: () => Promise<T>): Promise<T>;
    /**
     * pause waits out a 503 or 429 (Retry-After seconds, 1 if unsaid) and
     * says to try again: at most `retries` times, and only for a wait within
     * maxRetryAfter. Any other failure is final: false, at once.
     */
    protected pause(e: unknown, tries: number): Promise<boolean>;
}
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
export declare class Client extends Base {
    private readonly code;
    private pending?;
    constructor(o: ClientOptions);
    /**
     * login logs in, unless a session is held: call it once at app start.
     * Calls made while a login is under way share it (one wx.login, one
     * POST /mp/login).
     */
    login(): Promise<LoginResult>;
    /**
     * bindAccount logs in again with the business's binding token
     * (README, "Binding a business account"): the person is then known by
     * the business's external id.
     */
    bindAccount(bindToken: string): Promise<LoginResult>;
    /**
     * verifyPhone records the number the user verified with a getPhoneNumber
     * button: code is its event's detail.code. A code works once, so a 503 is
     * not retried: ask the user to tap again.
     */
    verifyPhone(code: string): Promise<{
        phone: Phone;
    }>;
    /** recordConsents reports what wx.requestSubscribeMessage resolved with. */
    recordConsents(result: SubscribeResult): Promise<{
        recorded: number;
    }>;
    /** me is GET /me: the person, every identity, the masked phone. */
    me(): Promise<Me>;
    private path;
    /**
     * authed sends a request with the session, logging in first when none is
     * held. An answer 401 drops the session, logs in again once (a new
     * wx.login code) and resends; a second 401 is the caller's. With retry,
     * a 503 is sent again (pause); a login retries its own.
     */
    private authed;
    /**
     * shared is the login under way, or a new one. A login with a binding
     * token waits for the one under way and then runs its own, which the
     * calls after it wait for.
     */
    private shared;
    /** loginOnce is one login with a new code: a code is never sent twice. */
    private loginOnce;
}
/** MiniProgramAPI is the part of wx (or uni, or Taro) the kit uses. */
export interface MiniProgramAPI {
    request: RequestFunction;
    login(options: {
        success(res: {
            code?: string;
        }): void;
        fail(err: {
            errMsg?: string;
        }): void;
    }): unknown;
}
/** MiniProgramOptions are a mini program client's options. */
export type MiniProgramOptions = CommonOptions;
/**
 * miniProgram builds the Client of a mini program from wx (or uni, or
 * Taro): wx.request to send, wx.login for codes.
 */
export declare function miniProgram(api: MiniProgramAPI, options: MiniProgramOptions): Client;
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
/**
 * H5 is a page's side of wxbridge's H5 sign-in: it sends the browser
 * through the official account's web OAuth (or a website app's QR login),
 * takes the session from the fragment it comes back with, and calls GET
 * /me with it.
 */
export declare class H5 extends Base {
    private readonly loc?;
    private readonly hist?;
    constructor(o: H5Options);
    /**
     * signInURL is where signIn sends the browser. A page that links to it
     * instead of calling signIn has started a sign-in all the same: the
     * session it comes back with is accepted (completeSignIn).
     */
    signInURL(o?: SignInOptions): string;
    /** signIn sends the browser to sign in; it comes back to returnTo. */
    signIn(o?: SignInOptions): void;
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
    completeSignIn(): SignInOutcome;
    /**
     * me is GET /me. Without a session, or when wxbridge refuses it (the
     * session is then dropped), it throws invalid_session: sign in again.
     */
    me(): Promise<Me>;
    private location;
    /** begin records that a sign-in began that comes back to origin. */
    private begin;
    /** started is the origin a sign-in began for, forgotten as it is read. */
    private started;
}
/** h5 builds the H5 client of this page: fetch, location, history, sessionStorage. */
export declare function h5(options: H5Options): H5;
export {};
