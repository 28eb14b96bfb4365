/**
 * llhttp — the HTTP/1.1 parser inside Node's own http module — as the WebAssembly build that
 * undici ships, set up to parse requests. The sidecar's HTTP/1.1 server (transport/h1/) uses it
 * instead of node:http: the parser is the same code with the same strictness (no lenient flags:
 * conflicting Content-Length/Transfer-Encoding, bad chunk sizes, bare LF, obs-fold are errors),
 * while the per-request request/response stream objects node:http builds around it are skipped.
 *
 * The wasm files are undici internals (undici has no "exports" map, so they are reachable), which
 * is why package.json pins undici to an exact version. An undici that moved them, or whose wasm
 * imports or exports other names than the ones bound here, fails at start-up with one line
 * (ERR_LLHTTP_WASM), never per request; a changed callback signature (wasm does not describe
 * its signatures) fails test/unit/http1/llhttp.test.ts.
 */
import { createRequire } from 'node:module';
import { SidecarError } from '../errors.js';

const require = createRequire(import.meta.url);

interface WasmDescriptor {
  readonly module?: string;
  readonly name: string;
  readonly kind: string;
}

/** The slice of the WebAssembly global used here (the project's lib settings do not declare it). */
interface Wasm {
  Module: {
    new (bytes: Uint8Array): object;
    imports(module: object): WasmDescriptor[];
    exports(module: object): WasmDescriptor[];
  };
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
export interface ParserEvents {
  onMessageBegin(): number;
  onUrl(part: string): number;
  onHeaderField(part: string): number;
  onHeaderValue(part: string): number;
  onHeadersComplete(upgrade: boolean, keepAlive: boolean): number;
  onBody(chunk: Buffer): number;
  onMessageComplete(): number;
}

/**
 * A message's header names and values as llhttp reports them: one span at a time, and a read
 * boundary may split a name or a value into several spans.
 */
export class HeaderPairs {
  /** Flat name/value pairs, as received. */
  list: string[] = [];
  #inValue = true;

  /** The next name span starts a new pair (the last span was a value, or nothing yet). */
  get atName(): boolean {
    return this.#inValue;
  }

  /** A name span; true when it started a new pair. */
  name(part: string): boolean {
    const list = this.list;
    if (this.#inValue) {
      list.push(part);
      this.#inValue = false;
      return true;
    }
    const last = list.length - 1;
    list[last] = list[last]! + part;
    return false;
  }

  value(part: string): void {
    const list = this.list;
    if (!this.#inValue) {
      list.push(part);
      this.#inValue = true;
    } else {
      const last = list.length - 1;
      list[last] = list[last]! + part;
    }
  }

  /** Hands the pairs over and starts a fresh list (the next message, or a message's trailers). */
  take(): string[] {
    const list = this.list;
    this.list = [];
    this.#inValue = true;
    return list;
  }
}

const TYPE_REQUEST = 1;
export const HPE_OK = 0;
export const HPE_PAUSED_UPGRADE = 22;

/** The callbacks Engine binds (module "env"): the wasm must import exactly these. */
const IMPORTS = [
  'wasm_on_message_begin',
  'wasm_on_url',
  'wasm_on_status',
  'wasm_on_header_field',
  'wasm_on_header_value',
  'wasm_on_headers_complete',
  'wasm_on_body',
  'wasm_on_message_complete',
];

/** What this file calls: the wasm must export at least these (LlhttpExports). */
const EXPORTS = [
  'memory',
  'llhttp_alloc',
  'llhttp_free',
  'malloc',
  'free',
  'llhttp_execute',
  'llhttp_get_method',
  'llhttp_get_http_major',
  'llhttp_get_http_minor',
  'llhttp_get_error_pos',
  'llhttp_errno_name',
  'llhttp_method_name',
  'llhttp_resume_after_upgrade',
];

/**
 * Why a compiled llhttp module does not fit the bindings here, or null when it does: an import
 * not bound here (instantiation would fail), a callback bound here that the wasm no longer
 * calls (its events would silently go missing), or an export this file calls that is gone.
 */
export function llhttpMismatch(module: object): string | null {
  const imports = Module.imports(module);
  const exported = new Set(Module.exports(module).map((e) => e.name));
  const unknown = imports.filter((i) => i.module !== 'env' || i.kind !== 'function' || !IMPORTS.includes(i.name)).map((i) => `${i.module ?? ''}.${i.name}`);
  const uncalled = IMPORTS.filter((name) => !imports.some((i) => i.module === 'env' && i.name === name));
  const missing = EXPORTS.filter((name) => !exported.has(name));
  const problems: string[] = [];
  if (unknown.length > 0) problems.push(`imports ${unknown.join(', ')}, which it does not bind`);
  if (uncalled.length > 0) problems.push(`no longer imports ${uncalled.join(', ')}`);
  if (missing.length > 0) problems.push(`does not export ${missing.join(', ')}`);
  return problems.length === 0 ? null : problems.join('; ');
}

const PINNED = 'undici must be the exact version package.json pins';

function compile(file: string): object {
  let bytes: Buffer;
  try {
    bytes = require(`undici/lib/llhttp/${file}`) as Buffer;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new SidecarError('ERR_LLHTTP_WASM', `cannot load undici/lib/llhttp/${file} (${typeof code === 'string' ? code : 'not loadable'}): ${PINNED}`, {
      cause: err,
    });
  }
  return new Module(bytes);
}

function loadModule(): object {
  let module: object;
  try {
    module = compile('llhttp_simd-wasm.js');
  } catch {
    // No wasm SIMD on this CPU/runtime (or no such file): the plain build (undici falls back the same way).
    module = compile('llhttp-wasm.js');
  }
  const mismatch = llhttpMismatch(module);
  if (mismatch !== null) {
    const version = (require('undici/package.json') as { version?: unknown }).version;
    throw new SidecarError('ERR_LLHTTP_WASM', `the llhttp wasm of undici ${String(version)} ${mismatch}: ${PINNED}`);
  }
  return module;
}

const wasmModule = loadModule();

/**
 * One wasm instance and its input buffer. Data callbacks name the bytes by their offset in the
 * instance's memory; one parser of an instance runs at a time.
 */
class Engine {
  readonly llhttp: LlhttpExports;
  current: ParserEvents | null = null;
  view: Buffer = Buffer.alloc(0);
  inPtr = 0;
  inSize = 0;

  constructor() {
    const str = (at: number, len: number): string => this.view.toString('latin1', at, at + len);
    const ev = (): ParserEvents => this.current as ParserEvents;
    this.llhttp = new Instance(wasmModule, {
      env: {
        wasm_on_message_begin: (): number => ev().onMessageBegin(),
        wasm_on_url: (_p: number, at: number, len: number): number => ev().onUrl(str(at, len)),
        wasm_on_status: (): number => 0,
        wasm_on_header_field: (_p: number, at: number, len: number): number => ev().onHeaderField(str(at, len)),
        wasm_on_header_value: (_p: number, at: number, len: number): number => ev().onHeaderValue(str(at, len)),
        wasm_on_headers_complete: (_p: number, _status: number, upgrade: number, keepAlive: number): number =>
          ev().onHeadersComplete(upgrade === 1, keepAlive === 1),
        // A copy: the wasm buffer is reused for the next read.
        wasm_on_body: (_p: number, at: number, len: number): number => ev().onBody(Buffer.from(this.view.subarray(at, at + len))),
        wasm_on_message_complete: (): number => ev().onMessageComplete(),
      },
    }).exports as LlhttpExports;
  }

  execute(ptr: number, events: ParserEvents, chunk: Buffer): number {
    const llhttp = this.llhttp;
    const len = chunk.length;
    if (len > this.inSize) {
      if (this.inPtr !== 0) llhttp.free(this.inPtr);
      this.inSize = Math.ceil(len / 16384) * 16384;
      this.inPtr = llhttp.malloc(this.inSize);
    }
    // malloc may have grown the memory, which detaches the previous view.
    if (this.view.buffer !== llhttp.memory.buffer) this.view = Buffer.from(llhttp.memory.buffer);
    this.view.set(chunk, this.inPtr);
    this.current = events;
    try {
      return llhttp.llhttp_execute(ptr, this.inPtr, len);
    } finally {
      this.current = null;
    }
  }

  consumed(ptr: number, rc: number, len: number): number {
    return rc === HPE_OK ? len : this.llhttp.llhttp_get_error_pos(ptr) - this.inPtr;
  }
}

const server = new Engine();
const llhttp = server.llhttp;

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

/** llhttp's name for an errno (HPE_INVALID_METHOD, ...). */
export function llhttpErrorName(errno: number): string {
  return cString(llhttp.llhttp_errno_name(errno));
}

/** One per connection. */
export class RequestParser {
  #ptr: number;
  readonly #events: ParserEvents;
  /** After a non-zero execute(): how many bytes of the chunk were consumed. */
  consumed = 0;

  constructor(ev: ParserEvents) {
    this.#events = ev;
    this.#ptr = llhttp.llhttp_alloc(TYPE_REQUEST);
  }

  /** Parse one read; returns llhttp's errno (0, HPE_PAUSED_UPGRADE, or an error). */
  execute(chunk: Buffer): number {
    const rc = server.execute(this.#ptr, this.#events, chunk);
    this.consumed = server.consumed(this.#ptr, rc, chunk.length);
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

  free(): void {
    if (this.#ptr !== 0) llhttp.llhttp_free(this.#ptr);
    this.#ptr = 0;
  }
}
