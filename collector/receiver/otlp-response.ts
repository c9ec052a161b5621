/**
 * OTLP/HTTP answers (opentelemetry-proto `collector/trace/v1/trace_service.proto`, OTLP spec
 * "OTLP/HTTP Response"): an `ExportTraceServiceResponse` in the request's encoding, with
 * `partial_success` when spans were refused; errors to protobuf requests as a `google.rpc.Status`.
 * Two tiny messages, written field by field with protobufjs' Writer.
 */
import protobuf from 'protobufjs';
import { formatIssues } from '../../model/issues.ts';
import type { RejectedSpan } from '../../model/otlp.ts';

export type OtlpEncoding = 'protobuf' | 'json';

export const OTLP_ENCODINGS: Readonly<Record<string, OtlpEncoding>> = {
  'application/x-protobuf': 'protobuf',
  'application/json': 'json',
};

export const OTLP_CONTENT_TYPES: Readonly<Record<OtlpEncoding, string>> = {
  protobuf: 'application/x-protobuf',
  json: 'application/json',
};

/** How many refused spans `errorMessage` describes one by one. */
const DESCRIBED_REJECTIONS = 5;

const LENGTH_DELIMITED = 2;
const VARINT = 0;
const tag = (field: number, wireType: number) => (field << 3) | wireType;

/** `{}` / zero bytes when every span was accepted, else `partialSuccess { rejectedSpans, errorMessage }`. */
export function exportTraceResponse(encoding: OtlpEncoding, rejected: readonly RejectedSpan[]): string | Uint8Array {
  const partial = rejected.length === 0 ? undefined : { rejectedSpans: rejected.length, errorMessage: describeRejections(rejected) };
  if (encoding === 'json') return JSON.stringify(partial ? { partialSuccess: partial } : {});
  const writer = protobuf.Writer.create();
  if (partial) {
    writer.uint32(tag(1, LENGTH_DELIMITED)).fork(); // ExportTraceServiceResponse.partial_success
    writer.uint32(tag(1, VARINT)).int64(partial.rejectedSpans); // ExportTracePartialSuccess.rejected_spans
    writer.uint32(tag(2, LENGTH_DELIMITED)).string(partial.errorMessage); // .error_message
    writer.ldelim();
  }
  return writer.finish();
}

/** `span 3: name: must not be empty; span 7: …; and 4 more`. */
export function describeRejections(rejected: readonly RejectedSpan[]): string {
  const described = rejected.slice(0, DESCRIBED_REJECTIONS).map((r) => `span ${r.index}: ${formatIssues(r.issues)}`);
  const more = rejected.length - described.length;
  return `${rejected.length} span(s) rejected: ${described.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
}

/** gRPC status codes (google.rpc.Code) for the HTTP statuses the receiver answers with. */
const RPC_CODES: Readonly<Record<number, number>> = {
  400: 3, // INVALID_ARGUMENT
  401: 16, // UNAUTHENTICATED
  403: 7, // PERMISSION_DENIED
  404: 5, // NOT_FOUND
  405: 12, // UNIMPLEMENTED
  413: 3, // INVALID_ARGUMENT: the request as sent can never be accepted
  415: 3,
  500: 13, // INTERNAL
  503: 14, // UNAVAILABLE
};

/** `google.rpc.Status { int32 code = 1; string message = 2; }`, for an HTTP error status. */
export function rpcStatus(httpStatus: number, message: string): Uint8Array {
  const code = RPC_CODES[httpStatus] ?? (httpStatus >= 500 ? 13 : 3);
  return protobuf.Writer.create()
    .uint32(tag(1, VARINT))
    .int32(code)
    .uint32(tag(2, LENGTH_DELIMITED))
    .string(message)
    .finish();
}
