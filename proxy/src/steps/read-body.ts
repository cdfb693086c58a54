import { ApiError } from '@crochet/protocol';
import type { Call } from '../call.js';

const EMPTY = Buffer.alloc(0);

/**
 * The request body, read once — after the caller is authenticated and admitted, so unpaid or unknown callers never
 * make the gateway hold a body — with the listing's limit applied while reading (a chunked body declares no length).
 */
export const readBody = (call: Call): ApiError | null | Promise<ApiError | null> => {
  const stream = call.request.raw;
  const { headers } = call.request;
  // A request has a body only when it says so (RFC 9112 §6.3).
  if (headers['transfer-encoding'] === undefined && (headers['content-length'] ?? '0') === '0') {
    call.body = EMPTY;
    return null;
  }
  const limitBytes = call.listing!.bodyLimitBytes;
  // The usual case: the whole body arrived with the headers (or while the call was being admitted) and waits in the
  // stream's buffer — taken at once, with no listeners and no promise.
  if (stream.complete && stream.readableLength > 0 && stream.readableLength <= limitBytes && !stream.readableFlowing) {
    const body = stream.read() as Buffer | null;
    if (body !== null) {
      call.body = body;
      call.bytesIn = body.length;
      return null;
    }
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const tooLarge = () => {
      call.responseHeaders['connection'] = 'close';
      return new ApiError('PAYLOAD_TOO_LARGE', {
        message: `The request body is larger than this listing accepts (${limitBytes} bytes).`,
        details: { limit_bytes: limitBytes },
      });
    };
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        stream.removeAllListeners('data');
        stream.resume();
        resolve(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    stream.once('end', () => {
      call.body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      call.bytesIn = size;
      resolve(null);
    });
    // The buyer's connection broke mid-body: the sequencer sees the call gone and ends it as client_aborted.
    const cut = () => resolve(new ApiError('VALIDATION_FAILED', { message: 'The request body was cut short.' }));
    stream.once('error', cut);
    stream.once('aborted', cut);
  });
};
