/**
 * Reading a request body into memory, bounded: `maxBytes` applies to what comes over the wire and,
 * for a compressed body, to what it inflates to (a few KB of gzip can inflate to gigabytes). Past the
 * limit, reading stops at once (413); nothing more is buffered.
 */
import type { IncomingMessage } from 'node:http';
import zlib from 'node:zlib';
import { HttpError } from './respond.ts';

export type ContentCoding = 'identity' | 'gzip' | 'deflate';

const CODINGS: Record<string, ContentCoding> = { '': 'identity', identity: 'identity', gzip: 'gzip', 'x-gzip': 'gzip', deflate: 'deflate' };

/** The Content-Encoding of a request, or 415 for anything else (including stacked codings). */
export function contentCoding(header: string | undefined): ContentCoding {
  const coding = CODINGS[(header ?? '').trim().toLowerCase()];
  if (coding !== undefined) return coding;
  throw new HttpError(415, `unsupported Content-Encoding "${header}"; use gzip, deflate or none`, {
    accepted: ['gzip', 'deflate', 'identity'],
  });
}

/** The decoded body; throws HttpError 413 (too large), 400 (corrupt compression, client went away). */
export function readBody(req: IncomingMessage, maxBytes: number, coding: ContentCoding): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > maxBytes) return Promise.reject(tooLarge(maxBytes, 'its Content-Length is'));

  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let wireBytes = 0;
    let bodyBytes = 0;
    let decoder: zlib.Gunzip | zlib.Inflate | zlib.InflateRaw | undefined;
    let done = false;

    const finish = (error?: HttpError): void => {
      if (done) return;
      done = true;
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (error) {
        req.pause(); // stop reading; the error response closes the connection
        decoder?.destroy();
        reject(error);
      } else {
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bodyBytes));
      }
    };
    const collect = (chunk: Buffer): void => {
      if (done) return;
      bodyBytes += chunk.length;
      if (bodyBytes > maxBytes) finish(tooLarge(maxBytes, coding === 'identity' ? 'it is' : 'it inflates to'));
      else chunks.push(chunk);
    };
    const onData = (chunk: Buffer): void => {
      wireBytes += chunk.length;
      if (wireBytes > maxBytes) return finish(tooLarge(maxBytes, coding === 'identity' ? 'it is' : 'even compressed it is'));
      if (coding === 'identity') return collect(chunk);
      decoder ??= createDecoder(coding, chunk, collect, finish);
      if (!decoder.write(chunk)) {
        req.pause();
        decoder.once('drain', () => done || req.resume());
      }
    };
    const onEnd = (): void => {
      if (decoder) decoder.end();
      else finish();
    };
    const onError = (error: Error): void => finish(new HttpError(400, `could not read the request body: ${error.message}`));
    const onClose = (): void => {
      if (!req.complete) finish(new HttpError(400, 'the client closed the connection before sending the whole body'));
    };
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

function createDecoder(
  coding: 'gzip' | 'deflate',
  firstChunk: Buffer,
  collect: (chunk: Buffer) => void,
  finish: (error?: HttpError) => void,
): zlib.Gunzip | zlib.Inflate | zlib.InflateRaw {
  // HTTP `deflate` is the zlib format (RFC 9110), but some clients send raw deflate: tell them apart
  // by the zlib header (CM = 8, header checksum divisible by 31), as browsers do.
  const zlibWrapped = firstChunk.length < 2 || ((firstChunk[0]! & 0x0f) === 8 && ((firstChunk[0]! << 8) | firstChunk[1]!) % 31 === 0);
  const decoder = coding === 'gzip' ? zlib.createGunzip() : zlibWrapped ? zlib.createInflate() : zlib.createInflateRaw();
  decoder.on('data', collect);
  decoder.on('end', () => finish());
  decoder.on('error', (error) => finish(new HttpError(400, `the body is not valid ${coding} data: ${error.message}`)));
  return decoder;
}

function tooLarge(maxBytes: number, what: string): HttpError {
  return new HttpError(
    413,
    `request body too large: ${what} over the limit of ${maxBytes} bytes (RECEIVER_MAX_BODY_BYTES); send smaller batches`,
    { limit: maxBytes },
  );
}
