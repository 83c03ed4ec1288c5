// A verifier of site-gate evidence files (format version 2), written from docs/evidence-format.md alone.
//
// One ES module, no dependencies. The verifier core uses only what a browser has: crypto.subtle (SHA-256,
// Ed25519), TextDecoder/TextEncoder and Intl.DateTimeFormat (IANA zones). Run from Node 20 it is also a
// command:
//
//   node tools/verify-evidence.js FILE --bank-key bank.pub [--register MIRROR.json] [--json]
//
// exit 0: OK, 1: FAILED (the first thing that does not hold), 2: usage error. In a page:
//
//   import { verifyEvidence, formatReport } from "./verify-evidence.js";
//   const result = await verifyEvidence(bytes, ["ed25519:..."], mirrorBytes);
//
// `result.ok` is true or false; `result.failure` names the first thing that does not hold; an OK result
// carries `proved` and `trusted` (docs/evidence-format.md §6), the evidence id and the days id.

const ZEROS = "0".repeat(64);
const MAX_DEPTH = 64;
const HEX64 = /^[0-9a-f]{64}$/;
const KEY_ID = /^[0-9a-f]{16}$/;
const SIGNATURE = /^[0-9a-f]{128}$/;
const SITE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const UPPER_HEX = /^[0-9A-F]+$/;
const CARD_UID = /^(?:[0-9A-F]{2}){4,10}$/;
const BANK_CARD = /^[0-9A-F]{32}$/;
const SUN = /^[0-9a-f]{32}:[0-9a-f]{16}$/;
// boot, reader: 1 to 64 characters, none a control, format, surrogate, private-use, unassigned or
// separator character but the space.
const LABEL = /^(?:(?![\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}])[\s\S]| ){1,64}$/u;
const CARD_FLAGS = ["card_forged", "card_replay", "card_unverified"];
const BANK_FLAGS = new Set(["not_assigned", "late_upload", "clock_future", "clock_backwards", "chain_break",
  "equivocated"]);
const PLAUSIBLE_FROM = "2020-01-01T00:00:00.000Z";
const DAY_MS = 86400000;

/** A verdict: the file does not hold (FAILED, exit 1). `check` says which kind of check caught it:
 * reading (§1), shape (members and types), signature (the bank's, a register entry's, a gate's), chain
 * (§4.2), entries (§4.4), register (a mirror, §4.1), days (§5), version. */
export class EvidenceError extends Error {
  constructor(message, check) {
    super(message);
    this.check = check;
  }
}

/** The caller's mistake (no key, a file that is not there): exit 2. */
export class UsageError extends Error {}

function fail(message, check = "shape") {
  throw new EvidenceError(message, check);
}

// ---------------------------------------------------------------------------------------------------------
// §1 Reading the file: a strict JSON reader.

class Reader {
  constructor(text, what) {
    this.text = text;
    this.at = 0;
    this.what = what;
  }

  error(message) {
    fail(`${this.what} is not strict JSON: ${message} (at character ${this.at})`, "reading");
  }

  space() {
    const t = this.text;
    while (this.at < t.length) {
      const c = t.charCodeAt(this.at);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.at += 1;
      else break;
    }
  }

  value(depth) {
    if (depth > MAX_DEPTH) this.error(`nested deeper than ${MAX_DEPTH}`);
    this.space();
    const c = this.text[this.at];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return this.string();
    if (c === "-" || (c >= "0" && c <= "9")) return this.number();
    for (const [word, value] of [["true", true], ["false", false], ["null", null]]) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return value;
      }
    }
    for (const word of ["NaN", "Infinity"]) {
      if (this.text.startsWith(word, this.at)) this.error(`${word} is not a JSON value`);
    }
    if (c === undefined) this.error("the text ends where a value is expected");
    return this.error(`unexpected ${JSON.stringify(c)}`);
  }

  object(depth) {
    this.at += 1;
    const result = Object.create(null);
    this.space();
    if (this.text[this.at] === "}") {
      this.at += 1;
      return result;
    }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') this.error("a member name must be a string");
      const name = this.string();
      if (Object.prototype.hasOwnProperty.call(result, name)) {
        this.error(`the name ${JSON.stringify(name)} appears twice in one object`);
      }
      this.space();
      if (this.text[this.at] !== ":") this.error("expected ':'");
      this.at += 1;
      result[name] = this.value(depth + 1);
      this.space();
      const c = this.text[this.at];
      this.at += 1;
      if (c === "}") return result;
      if (c !== ",") {
        this.at -= 1;
        this.error("expected ',' or '}'");
      }
    }
  }

  array(depth) {
    this.at += 1;
    const result = [];
    this.space();
    if (this.text[this.at] === "]") {
      this.at += 1;
      return result;
    }
    for (;;) {
      result.push(this.value(depth + 1));
      this.space();
      const c = this.text[this.at];
      this.at += 1;
      if (c === "]") return result;
      if (c !== ",") {
        this.at -= 1;
        this.error("expected ',' or ']'");
      }
    }
  }

  hex4() {
    const digits = this.text.slice(this.at, this.at + 4);
    if (!/^[0-9A-Fa-f]{4}$/.test(digits)) this.error("a \\u escape needs four hex digits");
    this.at += 4;
    return parseInt(digits, 16);
  }

  string() {
    const t = this.text;
    this.at += 1;
    let out = "";
    let start = this.at;
    for (;;) {
      if (this.at >= t.length) this.error("a string is not closed");
      const c = t.charCodeAt(this.at);
      if (c === 0x22) {
        out += t.slice(start, this.at);
        this.at += 1;
        return out;
      }
      if (c < 0x20) this.error("a control character inside a string must be escaped");
      if (c !== 0x5c) {
        this.at += 1;
        continue;
      }
      out += t.slice(start, this.at);
      const e = t[this.at + 1];
      this.at += 2;
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
      if (simple !== undefined) {
        out += simple;
      } else if (e === "u") {
        const unit = this.hex4();
        if (unit >= 0xdc00 && unit <= 0xdfff) this.error("a \\u escape leaves a lone surrogate");
        if (unit >= 0xd800 && unit <= 0xdbff) {
          if (t[this.at] !== "\\" || t[this.at + 1] !== "u") this.error("a \\u escape leaves a lone surrogate");
          this.at += 2;
          const low = this.hex4();
          if (low < 0xdc00 || low > 0xdfff) this.error("a \\u escape leaves a lone surrogate");
          out += String.fromCharCode(unit, low);
        } else {
          out += String.fromCharCode(unit);
        }
      } else {
        this.at -= 1;
        this.error("an unknown escape in a string");
      }
      start = this.at;
    }
  }

  number() {
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.text.slice(this.at, this.at + 400));
    if (match === null) this.error("a malformed number");
    if (match[2] !== undefined || match[3] !== undefined) {
      this.error(`the number ${match[0]} has a fraction or an exponent`);
    }
    const digits = match[1];
    if (digits.length > 16 || BigInt(digits) > 9007199254740991n) {
      this.error(`the integer ${match[0]} is beyond ±(2^53 − 1)`);
    }
    this.at += match[0].length;
    return Number(match[0]) + 0; // + 0: -0 reads as 0, as canonical bytes write it
  }
}

/** The JSON value of `bytes`, read as §1 requires (UTF-8 without BOM, no duplicate names, integers only). */
export function readStrict(bytes, what = "the file") {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    fail(`${what} starts with a byte order mark`, "reading");
  }
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return fail(`${what} is not UTF-8`, "reading");
  }
  const reader = new Reader(text, what);
  const value = reader.value(0);
  reader.space();
  if (reader.at !== text.length) reader.error("something follows the document");
  return value;
}

// ---------------------------------------------------------------------------------------------------------
// §2 Canonical bytes, digests, keys and signatures.

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function withoutMembers(obj, names) {
  const copy = Object.create(null);
  for (const name of Object.keys(obj)) if (!names.includes(name)) copy[name] = obj[name];
  return copy;
}

function escapeNonAscii(s) {
  return s.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** RFC 8785 text of a value (no fractions here); `ascii`: the punch variant, non-ASCII as \uxxxx. */
export function canonicalText(value, ascii = false) {
  if (value === null || value === true || value === false) return String(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError("canonical bytes of a non-integer");
    return String(value);
  }
  if (typeof value === "string") {
    const text = JSON.stringify(value); // RFC 8785's string escapes exactly
    return ascii ? escapeNonAscii(text) : text;
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalText(v, ascii)).join(",")}]`;
  const names = Object.keys(value).sort(); // default sort: UTF-16 code units, as RFC 8785 orders names
  return `{${names.map((n) => `${canonicalText(n, ascii)}:${canonicalText(value[n], ascii)}`).join(",")}}`;
}

export function canonicalBytes(value, ascii = false) {
  return new TextEncoder().encode(canonicalText(value, ascii));
}

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

async function sha256(bytes) {
  return hex(await globalThis.crypto.subtle.digest("SHA-256", bytes));
}

/** Lower-case hex SHA-256 of a value's canonical bytes. */
export async function digest(value, ascii = false) {
  return sha256(canonicalBytes(value, ascii));
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function base64(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
    out += i + 1 < bytes.length ? B64[(n >> 6) & 63] : "=";
    out += i + 2 < bytes.length ? B64[n & 63] : "=";
  }
  return out;
}

function unbase64(text) {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  const body = text.replace(/=+$/, "");
  const bytes = [];
  let bits = 0;
  let acc = 0;
  for (const c of body) {
    acc = (acc << 6) | B64.indexOf(c);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((acc >> bits) & 255);
    }
  }
  const out = Uint8Array.from(bytes);
  return base64(out) === text ? out : null; // only the one canonical spelling of the bytes
}

/** The 32 raw bytes of a public key text `ed25519:<base64>`, or null when it is not one. */
export function keyBytes(text) {
  if (typeof text !== "string" || !text.startsWith("ed25519:")) return null;
  const raw = unbase64(text.slice("ed25519:".length));
  return raw !== null && raw.length === 32 ? raw : null;
}

/** Key id: the first 16 hex digits of the SHA-256 of the raw key. */
export async function keyId(raw) {
  return (await sha256(raw)).slice(0, 16);
}

const importedKeys = new Map();

async function publicKey(raw) {
  const name = hex(raw);
  if (!importedKeys.has(name)) {
    importedKeys.set(name, globalThis.crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"])
      .catch(() => null));
  }
  return importedKeys.get(name);
}

/** Whether `sig` (128 lower-case hex) is the Ed25519 signature of `bytes` by the raw key. */
async function signatureHolds(raw, sig, bytes) {
  const key = await publicKey(raw);
  if (key === null) return false;
  try {
    return await globalThis.crypto.subtle.verify({ name: "Ed25519" }, key, unhex(sig), bytes);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Times, dates, zones.

const TIME = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z$/;
const DATE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;

function daysInMonth(y, m) {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(m) ? 30 : 31;
}

function realDate(y, m, d) {
  return y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= daysInMonth(y, m);
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(y, m, d) {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(z) {
  z += 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

/** Milliseconds since the epoch of a time text, or null when it is not a time (§2). */
export function timeMs(text) {
  const m = typeof text === "string" ? TIME.exec(text) : null;
  if (m === null) return null;
  const [y, mo, d, h, mi, s, ms] = m.slice(1).map(Number);
  if (!realDate(y, mo, d) || h > 23 || mi > 59 || s > 59) return null;
  return (daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000 + ms;
}

function isDate(text) {
  const m = typeof text === "string" ? DATE.exec(text) : null;
  return m !== null && realDate(Number(m[1]), Number(m[2]), Number(m[3]));
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

const zoneFormats = new Map();

function zoneFormat(zone) {
  if (!zoneFormats.has(zone)) {
    let format = null;
    // IANA names only: Intl would also take "+08:00" as a zone.
    if (/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(zone)) {
      try {
        format = new Intl.DateTimeFormat("en-US", {
          timeZone: zone, hourCycle: "h23", era: "short", year: "numeric", month: "numeric", day: "numeric",
          hour: "numeric", minute: "numeric", second: "numeric",
        });
      } catch {
        format = null;
      }
    }
    zoneFormats.set(zone, format);
  }
  return zoneFormats.get(zone);
}

/** The zone's offset from UTC at instant `t` (ms since the epoch), in milliseconds. */
function offsetMs(zone, t) {
  const second = t - (((t % 1000) + 1000) % 1000);
  const parts = {};
  for (const part of zoneFormat(zone).formatToParts(new Date(second))) parts[part.type] = part.value;
  let year = Number(parts.year);
  if (parts.era !== "AD") year = 1 - year;
  const local = (daysFromCivil(year, Number(parts.month), Number(parts.day)) * 86400
    + Number(parts.hour) * 3600 + Number(parts.minute) * 60 + Number(parts.second)) * 1000;
  return local - second;
}

/** The local date of instant `t`, as text that orders with dates: "0000-00-00" before the year 1, "9999-99-99"
 * after the year 9999 (§4.2: such a date counts as before, or after, every date). */
function localDate(zone, t) {
  const local = localAt(zone, t);
  if (local !== null) return local[0];
  return t < 0 ? "0000-00-00" : "9999-99-99";
}

/** [local date text, local time text] of instant `t` in `zone`; null when the local date is outside
 * years 1 to 9999 (it has no local date). */
function localAt(zone, t) {
  const offset = offsetMs(zone, t);
  const wall = t + offset;
  const day = Math.floor(wall / DAY_MS);
  const [y, m, d] = civilFromDays(day);
  if (y < 1 || y > 9999) return null;
  const secs = Math.floor((wall - day * DAY_MS) / 1000);
  const date = `${pad(y, 4)}-${pad(m)}-${pad(d)}`;
  const abs = Math.abs(offset / 1000);
  let zoneText = `${offset < 0 ? "-" : "+"}${pad(Math.floor(abs / 3600))}:${pad(Math.floor(abs / 60) % 60)}`;
  if (abs % 60 !== 0) zoneText += `:${pad(abs % 60)}`;
  const time = `${date}T${pad(Math.floor(secs / 3600))}:${pad(Math.floor(secs / 60) % 60)}:${pad(secs % 60)}`;
  return [date, time + zoneText];
}

// ---------------------------------------------------------------------------------------------------------
// Shapes: the members of every object, each with its type.

function typeName(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  if (typeof v === "number") return "an integer";
  return `a ${typeof v}`;
}

function members(obj, where, required, optional = []) {
  if (!isObject(obj)) fail(`${where} must be an object, not ${typeName(obj)}`);
  for (const name of Object.keys(obj)) {
    if (!required.includes(name) && !optional.includes(name)) fail(`${where} has a member ${JSON.stringify(name)} the format does not list`);
  }
  for (const name of required) {
    if (!Object.prototype.hasOwnProperty.call(obj, name)) fail(`${where} lacks the member ${JSON.stringify(name)}`);
  }
}

function string(v, where) {
  if (typeof v !== "string") fail(`${where} must be a string, not ${typeName(v)}`);
  return v;
}

function integer(v, where) {
  if (typeof v !== "number") fail(`${where} must be an integer, not ${typeName(v)}`);
  return v;
}

function boolean(v, where) {
  if (typeof v !== "boolean") fail(`${where} must be true or false, not ${typeName(v)}`);
  return v;
}

function array(v, where, { nonEmpty = false } = {}) {
  if (!Array.isArray(v)) fail(`${where} must be an array, not ${typeName(v)}`);
  if (nonEmpty && v.length === 0) fail(`${where} is empty`);
  return v;
}

function time(v, where) {
  string(v, where);
  if (timeMs(v) === null) fail(`${where} is not a time YYYY-MM-DDTHH:MM:SS.mmmZ: ${JSON.stringify(v)}`);
  return v;
}

function oneOf(v, values, where) {
  if (!values.includes(v)) fail(`${where} must be one of ${values.join(", ")}, not ${JSON.stringify(v)}`);
  return v;
}

function matching(v, pattern, where, what) {
  string(v, where);
  if (!pattern.test(v)) fail(`${where} is not ${what}: ${JSON.stringify(v)}`);
  return v;
}

function textOrder(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function once(list, keyOf, where, what, check = "shape") {
  const seen = new Set();
  list.forEach((item, i) => {
    const key = keyOf(item);
    if (seen.has(key)) fail(`${where}[${i}]: ${what(item)} appears twice`, check);
    seen.add(key);
  });
}

function ordered(list, keyOf, where, what, check = "shape") {
  for (let i = 1; i < list.length; i += 1) {
    if (textOrder(keyOf(list[i - 1]), keyOf(list[i])) >= 0) fail(`${where} is not ordered by ${what}, each once (at ${i})`, check);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Punches (docs/protocol.md "A punch").

const PUNCH_V1 = ["v", "site", "gate", "seq", "time", "mono_ms", "boot", "synced", "card", "tech", "reader", "dir",
  "roster", "prev", "key", "sig"];
const PUNCH_FIELDS = { 1: PUNCH_V1, 2: [...PUNCH_V1, "kind", "sun"], 3: [...PUNCH_V1, "kind", "sun", "cprev"] };

function checkPunch(p, where) {
  if (!isObject(p)) fail(`${where} must be an object, not ${typeName(p)}`);
  const v = p.v;
  if (typeof v !== "number" || !Object.prototype.hasOwnProperty.call(PUNCH_FIELDS, String(v))) {
    fail(`${where}: unknown punch protocol version ${JSON.stringify(v)}`);
  }
  members(p, where, PUNCH_FIELDS[v]);
  matching(p.site, SITE_ID, `${where}.site`, "a site id");
  matching(p.gate, SITE_ID, `${where}.gate`, "a gate id");
  if (integer(p.seq, `${where}.seq`) < 1) fail(`${where}.seq must be 1 or more`);
  time(p.time, `${where}.time`);
  if (integer(p.mono_ms, `${where}.mono_ms`) < 0) fail(`${where}.mono_ms must not be negative`);
  matching(p.boot, LABEL, `${where}.boot`, "1 to 64 printable characters");
  boolean(p.synced, `${where}.synced`);
  oneOf(p.tech, ["iso14443a", "iso14443b", "felica"], `${where}.tech`);
  matching(p.reader, LABEL, `${where}.reader`, "1 to 64 printable characters");
  oneOf(p.dir, ["in", "out", "toggle"], `${where}.dir`);
  oneOf(p.roster, ["known", "unknown", "none"], `${where}.roster`);
  matching(p.prev, HEX64, `${where}.prev`, "a digest (64 lower-case hex digits)");
  if (p.seq === 1 && p.prev !== ZEROS) fail(`${where}: a punch with seq 1 must have prev 64 zeros`);
  matching(p.key, KEY_ID, `${where}.key`, "a key id (16 lower-case hex digits)");
  matching(p.sig, SIGNATURE, `${where}.sig`, "a signature (128 lower-case hex digits)");
  const kind = v >= 2 ? oneOf(p.kind, ["uid", "bank", "ntag424"], `${where}.kind`) : "uid";
  if (kind === "bank") matching(p.card, BANK_CARD, `${where}.card`, "a bank card's identifier (32 upper-case hex digits)");
  else matching(p.card, CARD_UID, `${where}.card`, "a card UID (8 to 20 upper-case hex digits, an even number)");
  if (v >= 2) {
    if (kind === "ntag424") matching(p.sun, SUN, `${where}.sun`, "a SUN message (32 hex digits, ':', 16 hex digits)");
    else if (p.sun !== "") fail(`${where}.sun must be "" for a card of kind ${kind}`);
  }
  if (v >= 3) {
    for (const name of ["boot", "reader"]) {
      matching(p[name], /^[\x20-\x7e]+$/, `${where}.${name}`, "printable ASCII (a version 3 punch)");
    }
    matching(p.cprev, HEX64, `${where}.cprev`, "a digest (64 lower-case hex digits)");
    if (p.seq === 1 && p.cprev !== ZEROS) fail(`${where}: a punch with seq 1 must have cprev 64 zeros`);
  }
}

/** The punch's digest: SHA-256 of its canonical bytes without `sig` (the punch variant). */
function punchBytes(p) {
  return canonicalBytes(withoutMembers(p, ["sig"]), true);
}

// ---------------------------------------------------------------------------------------------------------
// The verifier.

function trustedKeys(texts) {
  const lines = [];
  for (const text of texts) {
    if (typeof text !== "string") throw new UsageError("a trusted bank key must be a text");
    for (let line of text.split(/\r?\n/)) {
      line = line.split("#")[0].trim(); // what follows '#' is a comment (`collector bank-key` prints one)
      if (line !== "") lines.push(line);
    }
  }
  if (lines.length === 0) throw new UsageError("no trusted bank key given");
  return lines.map((line) => {
    const raw = keyBytes(line);
    if (raw === null) throw new UsageError(`not a public key text (ed25519:<base64 of 32 bytes>): ${line.slice(0, 80)}`);
    return raw;
  });
}

function registerEntryShape(entry, where) {
  members(entry, where, ["register", "version", "index", "prev", "at", "action", "site", "gate", "key_id",
    "public_key", "since", "bank_key", "sig"]);
  oneOf(entry.register, ["site-gate-keys"], `${where}.register`);
  oneOf(entry.version, [1], `${where}.version`);
  if (integer(entry.index, `${where}.index`) < 1) fail(`${where}.index must be 1 or more`);
  matching(entry.prev, HEX64, `${where}.prev`, "a digest (64 lower-case hex digits)");
  if (entry.index === 1 && entry.prev !== ZEROS) fail(`${where}: entry 1 of the register must have prev 64 zeros`);
  time(entry.at, `${where}.at`);
  oneOf(entry.action, ["add", "revoke"], `${where}.action`);
  matching(entry.site, SITE_ID, `${where}.site`, "a site id");
  matching(entry.gate, SITE_ID, `${where}.gate`, "a gate id");
  matching(entry.key_id, KEY_ID, `${where}.key_id`, "a key id (16 lower-case hex digits)");
  string(entry.public_key, `${where}.public_key`);
  time(entry.since, `${where}.since`);
  matching(entry.bank_key, KEY_ID, `${where}.bank_key`, "a key id (16 lower-case hex digits)");
  matching(entry.sig, SIGNATURE, `${where}.sig`, "a signature (128 lower-case hex digits)");
}

/** Checks a register entry's own key and the bank's signature over it; returns its digest. */
async function registerEntry(entry, where, bankKeys) {
  registerEntryShape(entry, where);
  const raw = keyBytes(entry.public_key);
  if (raw === null) fail(`${where}.public_key is not a public key text`, "signature");
  if (await keyId(raw) !== entry.key_id) fail(`${where}.key_id is not the id of its public_key`, "signature");
  const bank = bankKeys.get(entry.bank_key);
  if (bank === undefined) fail(`${where} is signed by bank key ${entry.bank_key}, which is not a bank key you trust`, "signature");
  const unsigned = canonicalBytes(withoutMembers(entry, ["sig"]));
  if (!await signatureHolds(bank, entry.sig, unsigned)) fail(`${where}: the bank's signature over the register entry does not verify`, "signature");
  return sha256(unsigned);
}

/** The register entries of a mirror, its own chain checked: [index -> {entry, digest}]. */
async function readMirror(bytes, bankKeys) {
  // `collector register export` writes {"format":"site-gate-key-register","version":1,"entries":[...]}.
  const doc = readStrict(bytes, "the register mirror");
  members(doc, "the register mirror", ["format", "version", "entries"]);
  oneOf(doc.format, ["site-gate-key-register"], "the register mirror's format");
  oneOf(doc.version, [1], "the register mirror's version");
  const entries = array(doc.entries, "the register mirror's entries", { nonEmpty: true });
  const byIndex = new Map();
  let prev = ZEROS;
  for (let i = 0; i < entries.length; i += 1) {
    const where = `the register mirror's entry ${i + 1}`;
    const found = await registerEntry(entries[i], where, bankKeys);
    if (entries[i].index !== i + 1) fail(`${where} has index ${entries[i].index}`);
    if (entries[i].prev !== prev) fail(`${where}: prev is not the digest of the entry before it (the mirror's chain is broken)`);
    byIndex.set(i + 1, { entry: entries[i], digest: found });
    prev = found;
  }
  return byIndex;
}

/**
 * Verify an evidence file (format version 2).
 * @param {Uint8Array} bytes the file
 * @param {string[]} trustedBankKeyTexts the bank's published keys (`ed25519:...`, a `#` comment allowed)
 * @param {Uint8Array} [mirrorBytes] a copy of the gate-key register obtained elsewhere
 * @returns {Promise<object>} `{ok: true, ...}` or `{ok: false, failure}`
 */
export async function verifyEvidence(bytes, trustedBankKeyTexts, mirrorBytes) {
  const trusted = trustedKeys(trustedBankKeyTexts);
  try {
    return await verify(bytes, trusted, mirrorBytes);
  } catch (error) {
    if (error instanceof EvidenceError) return { ok: false, failure: error.message, check: error.check };
    throw error;
  }
}

function versionOneHint(bytes) {
  // A version 1 file may hold fractions (max_shift_hours, minutes), which the strict reader refuses.
  try {
    const doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    return isObject(doc) && doc.format === "site-gate-evidence" && doc.version === 1;
  } catch {
    return false;
  }
}

async function verify(bytes, trustedRaw, mirrorBytes) {
  let doc;
  try {
    doc = readStrict(bytes);
  } catch (error) {
    if (error instanceof EvidenceError && versionOneHint(bytes)) fail("version 1: check with collector verify", "version");
    throw error;
  }
  if (!isObject(doc)) fail(`the file must hold an object, not ${typeName(doc)}`);
  if (doc.format !== "site-gate-evidence") fail(`the file is not an evidence file (format ${JSON.stringify(doc.format ?? null)})`);
  if (doc.version === 1) fail("version 1: check with collector verify", "version");
  if (doc.version !== 2) fail(`unknown evidence format version ${JSON.stringify(doc.version ?? null)}`);

  // §3: the bank's signature and the bank key's trust, before anything else.
  const bankKeys = new Map();
  for (const raw of trustedRaw) bankKeys.set(await keyId(raw), raw);
  for (const name of ["bank_key", "key", "sig"]) {
    if (!Object.prototype.hasOwnProperty.call(doc, name)) fail(`the file lacks the member "${name}"`, "signature");
  }
  if (typeof doc.bank_key !== "string") fail("bank_key must be a string", "signature");
  const bankRaw = keyBytes(doc.bank_key);
  if (bankRaw === null) fail("bank_key is not a public key text (ed25519:<base64 of 32 bytes>)", "signature");
  if (typeof doc.key !== "string" || !KEY_ID.test(doc.key)) fail("key is not a key id (16 lower-case hex digits)", "signature");
  if (typeof doc.sig !== "string" || !SIGNATURE.test(doc.sig)) {
    fail(`sig is not a signature (128 lower-case hex digits): ${JSON.stringify(doc.sig)}`, "signature");
  }
  const bankId = await keyId(bankRaw);
  if (doc.key !== bankId) fail(`key ${doc.key} is not the id of bank_key (${bankId})`, "signature");
  if (!await signatureHolds(bankRaw, doc.sig, canonicalBytes(withoutMembers(doc, ["sig"])))) {
    fail("the bank's signature does not verify (changed after the bank signed it)", "signature");
  }
  if (!bankKeys.has(bankId)) fail(`signed by key ${bankId}, which is not a bank key you trust`, "signature");

  // §3: the document's fields.
  members(doc, "the file", ["format", "version", "generated_at", "worker", "period", "cards", "sites", "gates",
    "manual", "voids", "days", "bank_key", "key", "sig"]);
  const now = timeMs(time(doc.generated_at, "generated_at"));
  members(doc.worker, "worker", ["worker", "name", "employer"]);
  string(doc.worker.worker, "worker.worker");
  string(doc.worker.name, "worker.name");
  if (doc.worker.employer !== null) string(doc.worker.employer, "worker.employer");
  members(doc.period, "period", ["from", "to"]);
  for (const name of ["from", "to"]) {
    if (!isDate(string(doc.period[name], `period.${name}`))) fail(`period.${name} is not a date YYYY-MM-DD`);
  }
  const { from, to } = doc.period;
  if (from > to) fail("period.from is after period.to");
  array(doc.cards, "cards");
  doc.cards.forEach((card, i) => {
    const where = `cards[${i}]`;
    members(card, where, ["uid", "valid_from", "valid_to"]);
    matching(card.uid, UPPER_HEX, `${where}.uid`, "upper-case hex");
    for (const name of ["valid_from", "valid_to"]) if (card[name] !== null) time(card[name], `${where}.${name}`);
  });
  if (!isObject(doc.sites)) fail(`sites must be an object, not ${typeName(doc.sites)}`);
  for (const [site, rules] of Object.entries(doc.sites)) {
    const where = `sites.${site}`;
    matching(site, SITE_ID, `a name of sites`, "a site id");
    members(rules, where, ["timezone", "max_shift_ms"]);
    string(rules.timezone, `${where}.timezone`);
    if (zoneFormat(rules.timezone) === null) fail(`${where}.timezone is not an IANA time zone this verifier knows: ${JSON.stringify(rules.timezone)}`);
    if (integer(rules.max_shift_ms, `${where}.max_shift_ms`) <= 0) fail(`${where}.max_shift_ms must be more than 0`);
  }
  const siteOf = (site, where, check = "shape") => {
    if (!Object.prototype.hasOwnProperty.call(doc.sites, site)) fail(`${where}: site ${JSON.stringify(site)} is not in sites`, check);
    return doc.sites[site];
  };
  const isWorkers = (card, at) => doc.cards.some((w) => w.uid === card && (w.valid_from === null || w.valid_from <= at)
    && (w.valid_to === null || at < w.valid_to));

  // §4.1, §4.2: gates, their keys and their chains.
  array(doc.gates, "gates");
  const events = new Map(); // site -> ref -> event
  const siteEvents = (site) => {
    if (!events.has(site)) events.set(site, new Map());
    return events.get(site);
  };
  const keyUses = []; // [gate entry, punch, received_at]
  let punchCount = 0;
  let workerPunches = 0;
  const cardChains = [];
  const newest = [];
  for (let g = 0; g < doc.gates.length; g += 1) {
    const gate = doc.gates[g];
    const where = `gates[${g}]`;
    members(gate, where, ["site", "gate", "keys", "chains"]);
    matching(gate.site, SITE_ID, `${where}.site`, "a site id");
    matching(gate.gate, SITE_ID, `${where}.gate`, "a gate id");
    const zone = siteOf(gate.site, where).timezone;
    const keys = new Map();
    array(gate.keys, `${where}.keys`, { nonEmpty: true });
    for (let k = 0; k < gate.keys.length; k += 1) {
      const kw = `${where}.keys[${k}]`;
      const entry = gate.keys[k];
      const entryDigest = await registerEntry(entry, kw, bankKeys);
      if (entry.action !== "add") fail(`${kw}.action must be add`);
      if (entry.since > entry.at) fail(`${kw}: since ${entry.since} is after at ${entry.at}`, "signature");
      if (entry.site !== gate.site || entry.gate !== gate.gate) fail(`${kw} is an entry of another gate (${entry.site}/${entry.gate})`, "signature");
      if (keys.has(entry.key_id)) fail(`${kw}: key ${entry.key_id} is listed twice for the gate`, "signature");
      keys.set(entry.key_id, { entry, digest: entryDigest, raw: keyBytes(entry.public_key), where: kw });
    }
    array(gate.chains, `${where}.chains`, { nonEmpty: true });
    const seqs = new Set();
    for (let c = 0; c < gate.chains.length; c += 1) {
      const chain = gate.chains[c];
      const cw = `${where}.chains[${c}]`;
      if (!isObject(chain)) fail(`${cw} must be an object, not ${typeName(chain)}`);
      const link = oneOf(chain.link, ["card", "gate"], `${cw}.link`);
      if (link === "card") members(chain, cw, ["link", "card", "end", "punches", "received_at", "card_flags"]);
      else members(chain, cw, ["link", "punches", "received_at", "card_flags"]);
      const { punches } = chain;
      array(punches, `${cw}.punches`, { nonEmpty: true });
      array(chain.received_at, `${cw}.received_at`);
      array(chain.card_flags, `${cw}.card_flags`);
      if (chain.received_at.length !== punches.length || chain.card_flags.length !== punches.length) {
        fail(`${cw}: punches, received_at and card_flags differ in length`);
      }
      const digests = [];
      for (let i = 0; i < punches.length; i += 1) {
        const p = punches[i];
        const pw = `${cw}.punches[${i}]`;
        checkPunch(p, pw);
        time(chain.received_at[i], `${cw}.received_at[${i}]`);
        const flags = array(chain.card_flags[i], `${cw}.card_flags[${i}]`);
        for (const flag of flags) oneOf(flag, CARD_FLAGS, `${cw}.card_flags[${i}][]`);
        ordered(flags, (f) => f, `${cw}.card_flags[${i}]`, "name");
        if (p.site !== gate.site || p.gate !== gate.gate) fail(`${pw} is a punch of another gate (${p.site}/${p.gate})`, "chain");
        const key = keys.get(p.key);
        if (key === undefined) fail(`${pw} is signed by key ${p.key}, which is not one of the gate's keys`, "signature");
        const bytesOf = punchBytes(p);
        if (!await signatureHolds(key.raw, p.sig, bytesOf)) fail(`${pw}: the gate's signature does not verify`, "signature");
        digests.push(await sha256(bytesOf));
        if (seqs.has(p.seq)) fail(`${pw}: seq ${p.seq} of gate ${gate.gate} appears twice in the file`, "chain");
        seqs.add(p.seq);
        keyUses.push([key, p, chain.received_at[i], pw]);
        punchCount += 1;
      }
      for (let i = 1; i < punches.length; i += 1) {
        const pw = `${cw}.punches[${i}]`;
        if (link === "card") {
          if (punches[i].v !== 3) fail(`${pw}: a card chain's punch after the first must be version 3`, "chain");
          if (punches[i].cprev !== digests[i - 1]) fail(`${pw}: cprev is not the digest of the punch before it (the card chain is broken)`, "chain");
          if (punches[i].seq <= punches[i - 1].seq) fail(`${pw}: seq does not increase along the card chain`, "chain");
        } else {
          if (punches[i].seq !== punches[i - 1].seq + 1) fail(`${pw}: seq is not one more than the punch before it (the gate chain is broken)`, "chain");
          if (punches[i].prev !== digests[i - 1]) fail(`${pw}: prev is not the digest of the punch before it (the gate chain is broken)`, "chain");
        }
      }
      const last = punches.length - 1;
      if (link === "card") {
        matching(chain.card, UPPER_HEX, `${cw}.card`, "upper-case hex");
        oneOf(chain.end, ["later", "newest"], `${cw}.end`);
        punches.forEach((p, i) => {
          if (p.card !== chain.card) fail(`${cw}.punches[${i}] is a punch of another card`, "chain");
        });
        const first = localDate(zone, timeMs(punches[0].time));
        const startsBefore = first < from;
        if (!startsBefore && !(punches[0].v === 3 && punches[0].cprev === ZEROS)) {
          fail(`${cw}: the card chain starts on ${first}, not before the period, and not at the card's first punch at the gate (a punch of the card before it could be missing)`, "chain");
        }
        if (chain.end === "later") {
          const end = localDate(zone, timeMs(punches[last].time));
          if (end <= to) fail(`${cw}: end "later", but the last punch's local date ${end} is not after the period`, "chain");
        } else {
          newest.push(`${gate.site}/${gate.gate} card ${chain.card}`);
        }
        cardChains.push(`${gate.site}/${gate.gate} card ${chain.card}: ${punches.length} punches, seq ${punches[0].seq} to ${punches[last].seq}`);
      } else {
        for (const i of [0, last]) {
          if (!isWorkers(punches[i].card, punches[i].time)) fail(`${cw}.punches[${i}]: a gate chain must start and end with the worker's punch`, "chain");
        }
      }
      // §4.3: the worker's punches become events.
      for (let i = 0; i < punches.length; i += 1) {
        const p = punches[i];
        if (!isWorkers(p.card, p.time)) continue;
        workerPunches += 1;
        const flags = [...chain.card_flags[i]];
        if (p.synced === false) flags.push("clock_unsynced");
        const t = timeMs(p.time);
        if (p.time < PLAUSIBLE_FROM || t - timeMs(chain.received_at[i]) > DAY_MS) flags.push("clock_implausible");
        const ref = `${gate.gate}#${p.seq}`;
        const into = siteEvents(gate.site);
        if (into.has(ref)) fail(`${cw}.punches[${i}]: two events of site ${gate.site} have the ref ${ref}`, "entries");
        into.set(ref, { ref, time: p.time, t, direction: p.dir, flags, manual: false, gate: gate.gate });
      }
    }
  }
  once(doc.gates, (gate) => `${gate.site}\u0000${gate.gate}`, "gates", (gate) => `gate ${gate.site}/${gate.gate}`);

  // §4.1: the keys against a mirror of the register.
  let mirrored = false;
  if (mirrorBytes !== undefined && mirrorBytes !== null) {
    let mirror;
    try {
      mirror = await readMirror(mirrorBytes, bankKeys);
    } catch (error) {
      if (error instanceof EvidenceError) error.check = "register";
      throw error;
    }
    const seen = new Set();
    for (const [key, p, receivedAt, pw] of keyUses) {
      if (!seen.has(key)) {
        seen.add(key);
        const found = mirror.get(key.entry.index);
        if (found === undefined || found.digest !== key.digest) {
          fail(`${key.where}: register entry ${key.entry.index} (key ${key.entry.key_id}) is not in the register mirror as the file has it`, "register");
        }
      }
      for (const { entry } of mirror.values()) {
        if (entry.action === "revoke" && entry.key_id === key.entry.key_id && entry.since <= receivedAt) {
          fail(`${pw}: signed by key ${entry.key_id}, revoked since ${entry.since} (register entry ${entry.index}), received at ${receivedAt}`, "register");
        }
      }
    }
    mirrored = true;
  }

  // §4.4: manual entries and voids.
  array(doc.manual, "manual");
  const manualList = [];
  doc.manual.forEach((m, i) => {
    const where = `manual[${i}]`;
    members(m, where, ["ref", "site", "time", "direction", "by", "reason", "entered_at"], ["dispute"]);
    matching(m.ref, /^manual#[1-9][0-9]*$/, `${where}.ref`, "manual#N");
    string(m.site, `${where}.site`);
    siteOf(m.site, where, "entries");
    time(m.time, `${where}.time`);
    oneOf(m.direction, ["in", "out"], `${where}.direction`);
    string(m.by, `${where}.by`);
    string(m.reason, `${where}.reason`);
    time(m.entered_at, `${where}.entered_at`);
    if ("dispute" in m) string(m.dispute, `${where}.dispute`);
    const into = siteEvents(m.site);
    if (into.has(m.ref)) fail(`${where}: two events of site ${m.site} have the ref ${m.ref}`, "entries");
    const flags = ["manual"];
    if (m.time < PLAUSIBLE_FROM || timeMs(m.time) - timeMs(m.entered_at) > DAY_MS) flags.push("clock_implausible");
    into.set(m.ref, { ref: m.ref, time: m.time, t: timeMs(m.time), direction: m.direction, flags, manual: true });
    manualList.push(m);
  });
  array(doc.voids, "voids");
  doc.voids.forEach((v, i) => {
    const where = `voids[${i}]`;
    members(v, where, ["ref", "site", "void_at", "by", "reason"], ["dispute"]);
    string(v.ref, `${where}.ref`);
    string(v.site, `${where}.site`);
    siteOf(v.site, where, "entries");
    time(v.void_at, `${where}.void_at`);
    string(v.by, `${where}.by`);
    string(v.reason, `${where}.reason`);
    if ("dispute" in v) string(v.dispute, `${where}.dispute`);
    const event = events.get(v.site)?.get(v.ref);
    if (event === undefined) fail(`${where} names ${v.ref}, which is no manual entry or punch of the worker at site ${v.site}`, "entries");
    event.flags.push("void");
  });
  once(doc.voids, (v) => `${v.site}\u0000${v.ref}`, "voids", (v) => `a void of ${v.ref} at site ${v.site}`, "entries");

  // §5: the days, recomputed and compared.
  const computed = [];
  for (const site of Object.keys(doc.sites).sort()) {
    computed.push(...siteDays(site, doc.sites[site], [...(events.get(site)?.values() ?? [])], doc, now));
  }
  computed.sort((a, b) => textOrder(a.site, b.site) || textOrder(a.date, b.date));
  if (!Array.isArray(doc.days)) fail(`days must be an array, not ${typeName(doc.days)}`);
  compareDays(doc.days, computed);

  const evidenceId = await digest(withoutMembers(doc, ["generated_at", "bank_key", "key", "sig"]));
  const daysId = await digest(doc.days);
  const lateEntries = [];
  for (const [key, , receivedAt] of keyUses) {
    if (key.entry.at > receivedAt && !lateEntries.includes(key)) lateEntries.push(key);
  }
  const gateKeys = doc.gates.flatMap((gate) => gate.keys.map((e) => `${gate.site}/${gate.gate} key ${e.key_id} (register entry ${e.index}, since ${e.since})`));
  const flagged = doc.gates.reduce((n, gate) => n + gate.chains.reduce((m, c) => m + c.card_flags.filter((f) => f.length > 0).length, 0), 0);
  const bankFlags = [...new Set(doc.days.flatMap((d) => d.flags.filter((f) => BANK_FLAGS.has(f)).map((f) => `${d.site} ${d.date} ${f}`)))];
  const who = (x) => `by ${x.by}: ${x.reason}${x.dispute !== undefined ? ` (answers dispute ${x.dispute})` : ""}`;
  return {
    ok: true,
    version: 2,
    evidence_id: evidenceId,
    days_id: daysId,
    canonical_sha256: await sha256(canonicalBytes(doc)),
    bank_key: bankId,
    worker: doc.worker,
    period: doc.period,
    generated_at: doc.generated_at,
    mirror: mirrored,
    proved: [
      `the trusted bank key ${bankId} signed every byte`,
      `every punch (${punchCount}, ${workerPunches} of them the worker's) is signed by a key of its gate's register entries`
        + (mirrored ? ", each entry found in the register mirror and no key revoked before a punch arrived" : ""),
      cardChains.length === 0 ? "no card chain in the file (gate chains: each unbroken between the worker's punches)"
        : `each card chain is unbroken from a start before the period to its end: ${cardChains.join("; ")}`,
      `the days are what the rules give: ${doc.days.length} day(s), every field equal`,
    ],
    trusted: [
      `the card windows: ${doc.cards.map((c) => `${c.uid} from ${c.valid_from ?? "the beginning"} to ${c.valid_to ?? "now"}`).join("; ") || "none"}`,
      `the site rules: ${Object.entries(doc.sites).map(([s, r]) => `${s} ${r.timezone}, max shift ${r.max_shift_ms} ms (${r.max_shift_ms / 3600000} h)`).join("; ") || "none"}`,
      `when the bank received each punch (received_at) and its card judgements (${flagged} punch(es) flagged)`,
      `the manual entries: ${manualList.map((m) => `${m.ref} ${m.site} ${m.time} (${m.direction}) ${who(m)}`).join("; ") || "none"}`,
      `the voids: ${doc.voids.map((v) => `${v.site} ${v.ref} at ${v.void_at} ${who(v)}`).join("; ") || "none"}`,
      `the bank's flags: ${bankFlags.join("; ") || "none"}`,
      `the chains marked newest (no later punch of the card held): ${newest.join("; ") || "none"}`,
      "that the file names every gate the worker used",
      ...(mirrored ? [] : [`the gate keys (no register mirror given): ${gateKeys.join("; ")}`]),
      ...lateEntries.map((key) => `key ${key.entry.key_id} of ${key.entry.site}/${key.entry.gate} was entered in the register at ${key.entry.at}, after the bank received punches it signed: the bank published it later`),
    ],
    days: doc.days.map((d) => ({ site: d.site, date: d.date, first_in: d.first_in, last_out: d.last_out, worked_minutes: d.worked_minutes, status: d.status, flags: d.flags })),
  };
}

// §5.1 - §5.3 for one site.
function siteDays(site, rules, siteEventList, doc, now) {
  const zone = rules.timezone;
  const max = rules.max_shift_ms;
  const dayEvents = [];
  for (const e of siteEventList) {
    if (e.flags.includes("clock_implausible")) continue;
    const local = localAt(zone, e.t);
    if (local === null) continue;
    e.date = local[0];
    e.local = local[1];
    dayEvents.push(e);
  }
  const eventOrder = (a, b) => textOrder(a.time, b.time) || textOrder(a.ref, b.ref);
  const isVoid = (e) => e.flags.includes("void");
  const isCardFlagged = (e) => e.flags.some((f) => CARD_FLAGS.includes(f));
  const counted = dayEvents.filter((e) => !isVoid(e) && !isCardFlagged(e)).sort(eventOrder);

  // §5.2, as its pseudo-code says.
  let openIn = null;
  let closed = null;
  const shifts = [];
  const anomalies = [];
  for (const e of counted) {
    let d = e.direction;
    if (d === "toggle") d = openIn !== null && e.t - openIn.t <= max ? "out" : "in";
    if (d === "in") {
      if (openIn !== null && e.t - openIn.t <= max) {
        anomalies.push({ e, why: "repeated_in", anchor: openIn });
        continue;
      }
      if (openIn !== null) shifts.push({ in: openIn, out: null, status: "missing_out" });
      openIn = e;
      closed = null;
      continue;
    }
    if (openIn !== null && e.t - openIn.t <= max) {
      closed = { in: openIn, out: e, status: "complete" };
      shifts.push(closed);
      openIn = null;
      continue;
    }
    if (openIn !== null) {
      shifts.push({ in: openIn, out: null, status: "missing_out" });
      openIn = null;
    }
    if (closed !== null && e.t - closed.out.t <= max) {
      anomalies.push({ e, why: "repeated_out", anchor: closed.in });
      continue;
    }
    shifts.push({ in: null, out: e, status: "missing_in" });
  }
  if (openIn !== null) shifts.push({ in: openIn, out: null, status: now - openIn.t <= max ? "open" : "missing_out" });

  // §5.3
  const days = new Map();
  const day = (date) => {
    if (!days.has(date)) days.set(date, { shifts: [], anomalies: [], shown: new Set() });
    return days.get(date);
  };
  for (const s of shifts) {
    const key = s.in ?? s.out;
    const into = day(key.date);
    into.shifts.push(s);
    if (s.in) into.shown.add(s.in);
    if (s.out) into.shown.add(s.out);
  }
  for (const a of anomalies) {
    const into = day(a.anchor.date);
    into.anomalies.push(a);
    into.shown.add(a.e);
  }
  const voidedOf = new Map();
  for (const e of dayEvents) {
    if ((isVoid(e) || isCardFlagged(e)) && days.has(e.date)) {
      days.get(e.date).shown.add(e);
      if (isVoid(e)) {
        if (!voidedOf.has(e.date)) voidedOf.set(e.date, []);
        voidedOf.get(e.date).push(e.ref);
      }
    }
  }
  const severity = ["missing_out", "missing_in", "anomaly", "open", "complete"];
  const result = [];
  for (const [date, d] of days) {
    if (date < doc.period.from || date > doc.period.to) continue;
    const keyOf = (s) => s.in ?? s.out;
    d.shifts.sort((a, b) => keyOf(a).t - keyOf(b).t); // stable: shifts of one time in the pairing's order
    const ms = (s) => (s.status === "complete" ? s.out.t - s.in.t : 0);
    const ins = d.shifts.filter((s) => s.in).map((s) => s.in);
    const outs = d.shifts.filter((s) => s.out).map((s) => s.out);
    const earliest = ins.reduce((a, e) => (a === null || e.t < a.t ? e : a), null);
    const latest = outs.reduce((a, e) => (a === null || e.t > a.t ? e : a), null);
    const statuses = new Set(d.shifts.map((s) => s.status));
    if (d.anomalies.length > 0) statuses.add("anomaly");
    const status = severity.find((s) => statuses.has(s)) ?? "complete";
    const voided = (voidedOf.get(date) ?? []).sort(textOrder);
    const flags = new Set();
    for (const e of d.shown) for (const f of e.flags) if (f !== "void") flags.add(f);
    if (voided.length > 0) flags.add("void");
    for (const a of d.anomalies) flags.add(a.why);
    for (const s of d.shifts) if (s.status === "missing_out" || s.status === "missing_in") flags.add(s.status);
    result.push({
      worker: doc.worker.worker,
      name: doc.worker.name,
      employer: doc.worker.employer,
      site,
      date,
      shifts: d.shifts.map((s) => ({
        in: s.in ? s.in.local : null,
        out: s.out ? s.out.local : null,
        in_ref: s.in ? s.in.ref : null,
        out_ref: s.out ? s.out.ref : null,
        ms: ms(s),
        status: s.status,
      })),
      worked_minutes: Math.floor(d.shifts.reduce((sum, s) => sum + ms(s), 0) / 60000),
      first_in: earliest ? earliest.local : null,
      last_out: latest ? latest.local : null,
      status,
      anomalies: d.anomalies.map((a) => ({ ref: a.e.ref, why: a.why })),
      voided,
      flags: [...flags].sort(textOrder),
    });
  }
  return result;
}

/** The first place two JSON values differ, or null. */
function difference(a, b, where) {
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i += 1) {
      const found = difference(a[i], b[i], `${where}[${i}]`);
      if (found !== null) return found;
    }
    return a.length === b.length ? null : `${where} has ${a.length} entries, the rules give ${b.length}`;
  }
  if (isObject(a) && isObject(b)) {
    for (const name of Object.keys(b)) {
      if (!Object.prototype.hasOwnProperty.call(a, name)) return `${where} lacks ${JSON.stringify(name)}`;
    }
    for (const name of Object.keys(a)) {
      if (!Object.prototype.hasOwnProperty.call(b, name)) return `${where} has a member ${JSON.stringify(name)} the format does not list`;
      const found = difference(a[name], b[name], `${where}.${name}`);
      if (found !== null) return found;
    }
    return null;
  }
  if (a === b) return null;
  return `${where} is ${JSON.stringify(a)}, the rules give ${JSON.stringify(b)}`;
}

function compareDays(stated, computed) {
  const filtered = stated.map((d, i) => {
    if (!isObject(d) || !Array.isArray(d.flags)) return d;
    d.flags.forEach((f, j) => {
      if (typeof f !== "string") fail(`days[${i}].flags[${j}] must be a string`, "days");
    });
    ordered(d.flags, (f) => f, `days[${i}].flags`, "name", "days");
    return { ...d, flags: d.flags.filter((f) => !BANK_FLAGS.has(f)) };
  });
  for (let i = 0; i < Math.max(filtered.length, computed.length); i += 1) {
    const a = filtered[i];
    const b = computed[i];
    const label = b ? `${b.site} ${b.date}` : "";
    if (a === undefined) fail(`days: the rules give a day ${label} the file does not state`, "days");
    const text = (x) => (typeof x === "string" ? x : JSON.stringify(x));
    const said = isObject(a) ? `${text(a.site)} ${text(a.date)}` : `days[${i}]`;
    if (b === undefined) fail(`days[${i}] (${said}): the rules give no such day`, "days");
    if (!isObject(a) || a.site !== b.site || a.date !== b.date) {
      fail(`days[${i}] is ${said}, the rules give ${label} there (a day missing, extra or out of order)`, "days");
    }
    const found = difference(a, b, `days[${i}] (${label})`);
    if (found !== null) fail(`${found}`, "days");
  }
}

// ---------------------------------------------------------------------------------------------------------
// The report (§6).

/** The text a person reads: OK with what was proved and trusted, or FAILED and the first thing. */
export function formatReport(result, name = "the file") {
  if (!result.ok) return `${name}: FAILED: ${result.failure}`;
  const lines = [
    `${name}: OK: evidence file of worker ${result.worker.worker} (${result.worker.name}), ${result.period.from} to ${result.period.to}`,
    `evidence id ${result.evidence_id}`,
    `days id ${result.days_id}`,
    "proved:",
    ...result.proved.map((p) => `  - ${p}`),
    "trusted (the bank's word):",
    ...result.trusted.map((t) => `  - ${t}`),
    "days:",
    ...result.days.map((d) => `  ${d.date} ${d.site}: in ${d.first_in ?? "-"}, out ${d.last_out ?? "-"}, `
      + `${Math.floor(d.worked_minutes / 60)} h ${String(d.worked_minutes % 60).padStart(2, "0")} min, ${d.status}`
      + `${d.flags.length ? ` [${d.flags.join(", ")}]` : ""}`),
    "not proved: that the person who tapped was the worker; a card chain proves nothing left out only between "
      + "its punches (and before them, with a start before the period); a gate clock set backwards could place "
      + "a later punch earlier in time.",
  ];
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------------------
// The command (Node only).

const USAGE = "usage: node verify-evidence.js FILE --bank-key bank.pub [--bank-key ...] [--register MIRROR.json] [--json]";

async function main(argv, fs) {
  let file = null;
  let mirrorPath = null;
  let asJson = false;
  const keyFiles = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === "--bank-key" || arg === "--register") {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a file`);
      if (arg === "--bank-key") keyFiles.push(argv[(i += 1)]);
      else if (mirrorPath !== null) throw new UsageError("--register given twice");
      else mirrorPath = argv[(i += 1)];
    } else if (arg === "--json") {
      asJson = true;
    } else if (arg === "-h" || arg === "--help") {
      return [USAGE, 0];
    } else if (arg.startsWith("-") && arg !== "-") {
      throw new UsageError(`unknown option ${arg}`);
    } else if (file === null) {
      file = arg;
    } else {
      throw new UsageError("one evidence file at a time");
    }
  }
  if (file === null) throw new UsageError("no evidence file given");
  if (keyFiles.length === 0) throw new UsageError("--bank-key is required: the bank's published key, never the one in the file");
  const read = (path, what) => {
    try {
      return new Uint8Array(fs.readFileSync(path));
    } catch (error) {
      throw new UsageError(`cannot read ${what} ${path}: ${error.code ?? error.message}`);
    }
  };
  const texts = keyFiles.map((path) => new TextDecoder().decode(read(path, "the bank key file")));
  const mirror = mirrorPath === null ? undefined : read(mirrorPath, "the register mirror");
  const result = await verifyEvidence(read(file, "the evidence file"), texts, mirror);
  return [asJson ? JSON.stringify(result, null, 2) : formatReport(result, file), result.ok ? 0 : 1];
}

if (globalThis.process?.versions?.node && Array.isArray(globalThis.process.argv) && globalThis.process.argv[1]) {
  const { realpathSync, readFileSync } = await import("node:fs");
  const { fileURLToPath } = await import("node:url");
  let self = false;
  try {
    self = realpathSync(globalThis.process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    self = false;
  }
  if (self) {
    const proc = globalThis.process;
    // Node 18 (Debian 12's nodejs) has WebCrypto, Ed25519 included, but not yet as a global.
    if (!globalThis.crypto?.subtle) globalThis.crypto = (await import("node:crypto")).webcrypto;
    try {
      const [text, code] = await main(proc.argv.slice(2), { readFileSync });
      proc.stdout.write(`${text}\n`);
      proc.exitCode = code;
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      proc.stderr.write(`verify-evidence: ${error.message}\n${USAGE}\n`);
      proc.exitCode = 2;
    }
  }
}
