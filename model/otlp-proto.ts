/**
 * The two wire forms of an `ExportTraceServiceRequest`, read into plain objects in OTLP/JSON field
 * naming (lowerCamelCase): protobuf through the trace subset of opentelemetry-proto as a protobufjs
 * descriptor, and OTLP/JSON through a JSON.parse that keeps 64-bit integers whole.
 *
 * Field numbers and types follow opentelemetry-proto `main` (collector/trace/v1/trace_service.proto,
 * trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto). The test suite proves
 * them against the bytes `@opentelemetry/otlp-transformer` writes. Fields we never read (links, flags,
 * trace_state, schema URLs, dropped counts, entity refs, the profiles-only `*_strindex` fields) are
 * left out or kept only where they help the round trip; protobufjs skips unknown fields on the wire.
 *
 * `SpanKind` and `StatusCode` are declared as `int32`: the same varint on the wire as a proto3 enum,
 * and it keeps values this schema does not know as numbers instead of protobufjs' closed-enum handling.
 */
import protobuf from 'protobufjs';

type FieldSpec = { type: string; id: number; rule?: 'repeated' };

const message = (fields: Record<string, FieldSpec>, oneofs?: Record<string, { oneof: string[] }>) => ({
  edition: 'proto3',
  // proto3 would refuse the whole request for one string with invalid UTF-8; decode it with U+FFFD instead.
  options: { features: { utf8_validation: 'NONE' } },
  fields,
  ...(oneofs ? { oneofs } : {}),
});

const COMMON = 'opentelemetry.proto.common.v1';
const KEY_VALUES = (id: number): FieldSpec => ({ rule: 'repeated', type: `${COMMON}.KeyValue`, id });

const descriptor = {
  nested: {
    opentelemetry: {
      nested: {
        proto: {
          nested: {
            common: {
              nested: {
                v1: {
                  nested: {
                    AnyValue: message(
                      {
                        stringValue: { type: 'string', id: 1 },
                        boolValue: { type: 'bool', id: 2 },
                        intValue: { type: 'int64', id: 3 },
                        doubleValue: { type: 'double', id: 4 },
                        arrayValue: { type: 'ArrayValue', id: 5 },
                        kvlistValue: { type: 'KeyValueList', id: 6 },
                        bytesValue: { type: 'bytes', id: 7 },
                      },
                      {
                        value: {
                          oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'],
                        },
                      },
                    ),
                    ArrayValue: message({ values: { rule: 'repeated', type: 'AnyValue', id: 1 } }),
                    KeyValueList: message({ values: KEY_VALUES(1) }),
                    KeyValue: message({ key: { type: 'string', id: 1 }, value: { type: 'AnyValue', id: 2 } }),
                    InstrumentationScope: message({
                      name: { type: 'string', id: 1 },
                      version: { type: 'string', id: 2 },
                      attributes: KEY_VALUES(3),
                      droppedAttributesCount: { type: 'uint32', id: 4 },
                    }),
                  },
                },
              },
            },
            resource: {
              nested: {
                v1: {
                  nested: {
                    Resource: message({
                      attributes: KEY_VALUES(1),
                      droppedAttributesCount: { type: 'uint32', id: 2 },
                    }),
                  },
                },
              },
            },
            trace: {
              nested: {
                v1: {
                  nested: {
                    ResourceSpans: message({
                      resource: { type: 'opentelemetry.proto.resource.v1.Resource', id: 1 },
                      scopeSpans: { rule: 'repeated', type: 'ScopeSpans', id: 2 },
                      schemaUrl: { type: 'string', id: 3 },
                    }),
                    ScopeSpans: message({
                      scope: { type: `${COMMON}.InstrumentationScope`, id: 1 },
                      spans: { rule: 'repeated', type: 'Span', id: 2 },
                      schemaUrl: { type: 'string', id: 3 },
                    }),
                    Span: {
                      ...message({
                        traceId: { type: 'bytes', id: 1 },
                        spanId: { type: 'bytes', id: 2 },
                        traceState: { type: 'string', id: 3 },
                        parentSpanId: { type: 'bytes', id: 4 },
                        name: { type: 'string', id: 5 },
                        kind: { type: 'int32', id: 6 },
                        startTimeUnixNano: { type: 'fixed64', id: 7 },
                        endTimeUnixNano: { type: 'fixed64', id: 8 },
                        attributes: KEY_VALUES(9),
                        droppedAttributesCount: { type: 'uint32', id: 10 },
                        events: { rule: 'repeated', type: 'Event', id: 11 },
                        droppedEventsCount: { type: 'uint32', id: 12 },
                        links: { rule: 'repeated', type: 'Link', id: 13 },
                        droppedLinksCount: { type: 'uint32', id: 14 },
                        status: { type: 'Status', id: 15 },
                        flags: { type: 'fixed32', id: 16 },
                      }),
                      nested: {
                        Event: message({
                          timeUnixNano: { type: 'fixed64', id: 1 },
                          name: { type: 'string', id: 2 },
                          attributes: KEY_VALUES(3),
                          droppedAttributesCount: { type: 'uint32', id: 4 },
                        }),
                        Link: message({
                          traceId: { type: 'bytes', id: 1 },
                          spanId: { type: 'bytes', id: 2 },
                          traceState: { type: 'string', id: 3 },
                          attributes: KEY_VALUES(4),
                          droppedAttributesCount: { type: 'uint32', id: 5 },
                          flags: { type: 'fixed32', id: 6 },
                        }),
                      },
                    },
                    Status: message({
                      // field 1 is reserved
                      message: { type: 'string', id: 2 },
                      code: { type: 'int32', id: 3 },
                    }),
                  },
                },
              },
            },
            collector: {
              nested: {
                trace: {
                  nested: {
                    v1: {
                      nested: {
                        ExportTraceServiceRequest: message({
                          resourceSpans: { rule: 'repeated', type: 'opentelemetry.proto.trace.v1.ResourceSpans', id: 1 },
                        }),
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};

/** `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`; a constant, built once. */
export const ExportTraceServiceRequest: protobuf.Type = protobuf.Root.fromJSON(descriptor).lookupType(
  'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest',
);

/**
 * Decodes the protobuf binary form into a plain object with OTLP/JSON's field names. 64-bit integers
 * come out as decimal strings (fixed64 unsigned, int64 signed: no precision lost), ids and
 * `bytesValue` as `Uint8Array`, enums as numbers. Throws whatever protobufjs throws on malformed input.
 */
export function decodeExportTraceRequest(body: Uint8Array): Record<string, unknown> {
  const decoded = ExportTraceServiceRequest.decode(body);
  return ExportTraceServiceRequest.toObject(decoded, { longs: String, enums: Number, arrays: true });
}

/** Parses an OTLP/JSON body (UTF-8, strictly). Throws on invalid UTF-8 or JSON. */
export function parseOtlpJson(body: Uint8Array): unknown {
  return JSON.parse(quoteUnsafeIntegers(new TextDecoder('utf-8', { fatal: true }).decode(body)));
}

/**
 * JSON.parse turns integers beyond 2^53 into doubles, and OTLP/JSON may write 64-bit fields
 * (`startTimeUnixNano`, `intValue`) as numbers. Quoting every such integer literal (outside strings)
 * before parsing keeps all its digits; the span reader accepts 64-bit values as strings anyway.
 */
function quoteUnsafeIntegers(json: string): string {
  if (!/\d{16}/.test(json)) return json;
  let out = '';
  let copied = 0;
  let i = 0;
  while (i < json.length) {
    const c = json.charCodeAt(i);
    if (c === QUOTE) {
      i = endOfString(json, i);
    } else if (c === MINUS || isDigit(c)) {
      const start = i;
      do i++;
      while (i < json.length && isNumberChar(json.charCodeAt(i)));
      const token = json.slice(start, i);
      if (/^-?[1-9]\d{15,}$/.test(token) && !Number.isSafeInteger(Number(token))) {
        out += `${json.slice(copied, start)}"${token}"`;
        copied = i;
      }
    } else i++;
  }
  return out + json.slice(copied);
}

const QUOTE = 0x22, BACKSLASH = 0x5c, MINUS = 0x2d;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isNumberChar = (c: number) => isDigit(c) || c === 0x2e || c === 0x2b || c === MINUS || c === 0x45 || c === 0x65;

/** Index just past the string literal opening at `open` (or the end of the text if it never closes). */
function endOfString(json: string, open: number): number {
  let close = json.indexOf('"', open + 1);
  while (close !== -1) {
    let backslashes = 0;
    while (json.charCodeAt(close - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return close + 1;
    close = json.indexOf('"', close + 1);
  }
  return json.length;
}
