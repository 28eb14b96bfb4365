/** HTTP/2 frame types, flags, settings and error codes (RFC 9113 6, 7, 11), and frame building. */

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FRAME_HEADER = 9;

export const T_DATA = 0x0;
export const T_HEADERS = 0x1;
export const T_PRIORITY = 0x2;
export const T_RST_STREAM = 0x3;
export const T_SETTINGS = 0x4;
export const T_PUSH_PROMISE = 0x5;
export const T_PING = 0x6;
export const T_GOAWAY = 0x7;
export const T_WINDOW_UPDATE = 0x8;
export const T_CONTINUATION = 0x9;

export const F_END_STREAM = 0x1;
export const F_ACK = 0x1;
export const F_END_HEADERS = 0x4;
export const F_PADDED = 0x8;
export const F_PRIORITY = 0x20;

export const S_HEADER_TABLE_SIZE = 0x1;
export const S_ENABLE_PUSH = 0x2;
export const S_MAX_CONCURRENT_STREAMS = 0x3;
export const S_INITIAL_WINDOW_SIZE = 0x4;
export const S_MAX_FRAME_SIZE = 0x5;
export const S_MAX_HEADER_LIST_SIZE = 0x6;

export const E_NO_ERROR = 0x0;
export const E_PROTOCOL_ERROR = 0x1;
export const E_INTERNAL_ERROR = 0x2;
export const E_FLOW_CONTROL_ERROR = 0x3;
export const E_STREAM_CLOSED = 0x5;
export const E_FRAME_SIZE_ERROR = 0x6;
export const E_REFUSED_STREAM = 0x7;
export const E_CANCEL = 0x8;
export const E_COMPRESSION_ERROR = 0x9;
export const E_ENHANCE_YOUR_CALM = 0xb;

/** Connection-specific fields, which HTTP/2 forbids in either direction (RFC 9113 8.2.2). */
export const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export const DEFAULT_WINDOW = 65535;
export const MAX_WINDOW = 2 ** 31 - 1;
export const MIN_FRAME_SIZE = 16384;
export const MAX_FRAME_SIZE = 2 ** 24 - 1;

/** A frame with its payload copied in (small frames: control frames and header blocks). */
export function frame(type: number, flags: number, sid: number, payload: Uint8Array | null): Buffer {
  const len = payload === null ? 0 : payload.length;
  const f = Buffer.allocUnsafe(FRAME_HEADER + len);
  writeFrameHeader(f, 0, len, type, flags, sid);
  if (payload !== null) f.set(payload, FRAME_HEADER);
  return f;
}

export function writeFrameHeader(buf: Buffer, o: number, len: number, type: number, flags: number, sid: number): void {
  buf[o] = (len >>> 16) & 0xff;
  buf[o + 1] = (len >>> 8) & 0xff;
  buf[o + 2] = len & 0xff;
  buf[o + 3] = type;
  buf[o + 4] = flags;
  buf.writeUInt32BE(sid, o + 5);
}

export function settingsFrame(settings: readonly (readonly [number, number])[]): Buffer {
  const p = Buffer.allocUnsafe(settings.length * 6);
  settings.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(T_SETTINGS, 0, 0, p);
}

export function u32Frame(type: number, sid: number, value: number): Buffer {
  const f = Buffer.allocUnsafe(FRAME_HEADER + 4);
  writeFrameHeader(f, 0, 4, type, 0, sid);
  f.writeUInt32BE(value, FRAME_HEADER);
  return f;
}

export function goawayFrame(lastSid: number, code: number): Buffer {
  const f = Buffer.allocUnsafe(FRAME_HEADER + 8);
  writeFrameHeader(f, 0, 8, T_GOAWAY, 0, 0);
  f.writeUInt32BE(lastSid, FRAME_HEADER);
  f.writeUInt32BE(code, FRAME_HEADER + 4);
  return f;
}

export const SETTINGS_ACK = frame(T_SETTINGS, F_ACK, 0, null);
