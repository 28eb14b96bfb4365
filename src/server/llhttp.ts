/**
 * llhttp — the HTTP/1.1 parser inside Node's own http module — as the WebAssembly build that
 * undici ships, set up to parse requests. The sidecar's HTTP/1.1 server (server/h1.ts) uses it
 * instead of node:http: the parser is the same code with the same strictness (no lenient flags:
 * conflicting Content-Length/Transfer-Encoding, bad chunk sizes, bare LF, obs-fold are errors),
 * while the per-request request/response stream objects node:http builds around it are skipped.
 *
 * undici has no "exports" map, so the file is reachable; an undici upgrade that moves it fails
 * at start-up (import), not per request.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The slice of the WebAssembly global used here (the project's lib settings do not declare it). */
interface Wasm {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, (...args: number[]) => number>>) => { readonly exports: unknown };
}
const { Module, Instance } = (globalThis as unknown as { WebAssembly: Wasm }).WebAssembly;

interface LlhttpExports {
  readonly memory: { readonly buffer: ArrayBuffer };
  llhttp_alloc(type: number): number;
  llhttp_free(parser: number): void;
  malloc(size: number): number;
  free(ptr: number): void;
  llhttp_execute(parser: number, data: number, len: number): number;
  llhttp_get_method(parser: number): number;
  llhttp_get_http_major(parser: number): number;
  llhttp_get_http_minor(parser: number): number;
  llhttp_get_error_pos(parser: number): number;
  llhttp_errno_name(errno: number): number;
  llhttp_method_name(method: number): number;
  llhttp_resume_after_upgrade(parser: number): void;
}

/** What a parser reports; a non-zero return from a callback stops the parse with HPE_USER. */
export interface RequestEvents {
  onMessageBegin(): number;
  onUrl(part: string): number;
  onHeaderField(part: string): number;
  onHeaderValue(part: string): number;
  onHeadersComplete(upgrade: boolean, keepAlive: boolean): number;
  onBody(chunk: Buffer): number;
  onMessageComplete(): number;
}

const TYPE_REQUEST = 1;
export const HPE_OK = 0;
export const HPE_PAUSED_UPGRADE = 22;

// Data callbacks name the bytes by their offset in the wasm memory; one parser runs at a time.
let current: RequestEvents | null = null;
let view: Buffer = Buffer.alloc(0);

function str(at: number, len: number): string {
  return view.toString('latin1', at, at + len);
}

function events(): RequestEvents {
  return current as RequestEvents;
}

function loadModule(): object {
  try {
    return new Module(require('undici/lib/llhttp/llhttp_simd-wasm.js') as Buffer);
  } catch {
    // No wasm SIMD on this CPU/runtime: the plain build (undici falls back the same way).
    return new Module(require('undici/lib/llhttp/llhttp-wasm.js') as Buffer);
  }
}

const wasmModule = loadModule();
const llhttp = new Instance(wasmModule, {
  env: {
    wasm_on_message_begin: (): number => events().onMessageBegin(),
    wasm_on_url: (_p: number, at: number, len: number): number => events().onUrl(str(at, len)),
    wasm_on_status: (): number => 0,
    wasm_on_header_field: (_p: number, at: number, len: number): number => events().onHeaderField(str(at, len)),
    wasm_on_header_value: (_p: number, at: number, len: number): number => events().onHeaderValue(str(at, len)),
    wasm_on_headers_complete: (_p: number, _status: number, upgrade: number, keepAlive: number): number =>
      events().onHeadersComplete(upgrade === 1, keepAlive === 1),
    // A copy: the wasm buffer is reused for the next read.
    wasm_on_body: (_p: number, at: number, len: number): number => events().onBody(Buffer.from(view.subarray(at, at + len))),
    wasm_on_message_complete: (): number => events().onMessageComplete(),
  },
}).exports as unknown as LlhttpExports;

let inPtr = 0;
let inSize = 0;

function cString(ptr: number): string {
  const v = Buffer.from(llhttp.memory.buffer);
  const end = v.indexOf(0, ptr);
  return v.toString('latin1', ptr, end);
}

/** Method names by llhttp's method number, decoded once. */
const methodNames: string[] = [];
function methodName(n: number): string {
  let name = methodNames[n];
  if (name === undefined) {
    name = cString(llhttp.llhttp_method_name(n));
    methodNames[n] = name;
  }
  return name;
}

/** One per connection. */
export class RequestParser {
  #ptr: number;
  readonly #events: RequestEvents;
  /** After a non-zero execute(): how many bytes of the chunk were consumed. */
  consumed = 0;

  constructor(ev: RequestEvents) {
    this.#events = ev;
    this.#ptr = llhttp.llhttp_alloc(TYPE_REQUEST);
  }

  /** Parse one read; returns llhttp's errno (0, HPE_PAUSED_UPGRADE, or an error). */
  execute(chunk: Buffer): number {
    const len = chunk.length;
    if (len > inSize) {
      if (inPtr !== 0) llhttp.free(inPtr);
      inSize = Math.ceil(len / 16384) * 16384;
      inPtr = llhttp.malloc(inSize);
    }
    // malloc may have grown the memory, which detaches the previous view.
    if (view.buffer !== llhttp.memory.buffer) view = Buffer.from(llhttp.memory.buffer);
    view.set(chunk, inPtr);
    current = this.#events;
    let rc: number;
    try {
      rc = llhttp.llhttp_execute(this.#ptr, inPtr, len);
    } finally {
      current = null;
    }
    this.consumed = rc === HPE_OK ? len : llhttp.llhttp_get_error_pos(this.#ptr) - inPtr;
    return rc;
  }

  /** An Upgrade request the sidecar serves as a plain request: go on parsing after it. */
  resumeAfterUpgrade(): void {
    llhttp.llhttp_resume_after_upgrade(this.#ptr);
  }

  /** Valid inside onHeadersComplete. */
  method(): string {
    return methodName(llhttp.llhttp_get_method(this.#ptr));
  }

  httpMajor(): number {
    return llhttp.llhttp_get_http_major(this.#ptr);
  }

  httpMinor(): number {
    return llhttp.llhttp_get_http_minor(this.#ptr);
  }

  static errorName(errno: number): string {
    return cString(llhttp.llhttp_errno_name(errno));
  }

  free(): void {
    if (this.#ptr !== 0) llhttp.llhttp_free(this.#ptr);
    this.#ptr = 0;
  }
}
