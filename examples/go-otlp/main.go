// Command go-otlp sends what a go-micro v6 MCP gateway (go-micro.dev/v6/gateway/mcp) sends, without
// go-micro: an audit record per tool call, in go-micro's AuditRecord JSON, to POST /v1/audit, and an
// `mcp.tool.call` SERVER span per call, with go-micro's attribute names, through the real OTLP/HTTP
// exporter (protobuf, gzip) to POST /v1/traces.
//
// It plays a fixed script of five calls (a success, an RPC error, a scope denial, a missing token and a
// rate-limited call) at fixed offsets from -start, so every value that arrives is known in advance. It
// prints one JSON line per call on stdout (tool, go-micro trace id, OTel trace and span ids) and exits
// non-zero if the receiver refused anything.
//
//	RECEIVER_URL=http://127.0.0.1:4318 INGEST_TOKEN=secret go run .
//
// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT and OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, when set, configure the
// trace exporter instead of RECEIVER_URL and INGEST_TOKEN, as in any OpenTelemetry SDK.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// auditRecord is go-micro v6's gateway/mcp.AuditRecord wire format: the same fields and JSON tags, so
// json.Marshal writes exactly what a go-micro gateway's AuditFunc would hand to an encoder.
type auditRecord struct {
	TraceID        string        `json:"trace_id"`
	Timestamp      time.Time     `json:"timestamp"`
	Tool           string        `json:"tool"`
	AccountID      string        `json:"account_id,omitempty"`
	ScopesRequired []string      `json:"scopes_required,omitempty"`
	Allowed        bool          `json:"allowed"`
	DeniedReason   string        `json:"denied_reason,omitempty"`
	Duration       time.Duration `json:"duration,omitempty"`
	Error          string        `json:"error,omitempty"`
}

// go-micro v6 gateway/mcp span and attribute names (gateway/mcp/otel.go).
const (
	spanToolCall         = "mcp.tool.call"
	attrToolName         = "mcp.tool.name"
	attrTransport        = "mcp.transport"
	attrAccountID        = "mcp.account.id"
	attrTraceID          = "mcp.trace_id"
	attrAuthAllowed      = "mcp.auth.allowed"
	attrAuthDeniedReason = "mcp.auth.denied_reason"
	attrScopesRequired   = "mcp.auth.scopes_required"
	attrRateLimited      = "mcp.rate_limited"
)

// call is one scripted tool call and how the gateway decided it.
type call struct {
	tool         string
	account      string // empty: no (valid) token
	scopes       []string
	deniedReason string // empty: allowed
	rateLimited  bool
	duration     time.Duration // of the RPC; allowed calls only
	err          string        // the RPC's error
}

// The script. Calls start 10 ms apart; a denied call's span lasts deniedSpan.
var script = []call{
	{tool: "users.Users.Get", account: "acct-42", scopes: []string{"users:read"}, duration: 1523 * time.Microsecond},
	{tool: "users.Users.Get", account: "acct-42", scopes: []string{"users:read"}, duration: 4200 * time.Microsecond,
		err: `{"id":"users","code":404,"detail":"user 99 not found","status":"Not Found"}`},
	{tool: "users.Users.Delete", account: "acct-42", scopes: []string{"users:admin"}, deniedReason: "insufficient scopes"},
	{tool: "users.Users.Get", deniedReason: "missing token"},
	{tool: "orders.Orders.Create", account: "acct-7", deniedReason: "rate limited", rateLimited: true},
}

const (
	callSpacing = 10 * time.Millisecond
	deniedSpan  = 200 * time.Microsecond
)

// sent is what the program prints for each call.
type sent struct {
	Tool        string `json:"tool"`
	TraceID     string `json:"trace_id"`
	OtelTraceID string `json:"otel_trace_id"`
	OtelSpanID  string `json:"otel_span_id"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("go-otlp: ")
	start := flag.String("start", "", "RFC 3339 time of the first call (default: now)")
	flag.Parse()

	receiver := strings.TrimRight(envOr("RECEIVER_URL", "http://127.0.0.1:4318"), "/")
	token := os.Getenv("INGEST_TOKEN")
	t0 := time.Now().UTC()
	if *start != "" {
		var err error
		if t0, err = time.Parse(time.RFC3339Nano, *start); err != nil {
			log.Fatalf("-start: %v", err)
		}
	}
	if err := run(context.Background(), receiver, token, t0.UTC()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, receiver, token string, t0 time.Time) error {
	// Export failures surface through the global error handler; any one fails the run.
	var exportErrs errorList
	otel.SetErrorHandler(otel.ErrorHandlerFunc(exportErrs.add))

	exporter, err := otlptracehttp.New(ctx, exporterOptions(receiver, token)...)
	if err != nil {
		return fmt.Errorf("OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "go-otlp-example")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	tracer := tp.Tracer("mcp-audit-analytics/examples/go-otlp")

	records := make([]auditRecord, 0, len(script))
	out := json.NewEncoder(os.Stdout)
	for i, c := range script {
		record, span := play(ctx, tracer, c, t0.Add(time.Duration(i)*callSpacing))
		records = append(records, record)
		sc := span.SpanContext()
		if err := out.Encode(sent{Tool: c.tool, TraceID: record.TraceID, OtelTraceID: sc.TraceID().String(), OtelSpanID: sc.SpanID().String()}); err != nil {
			return err
		}
	}

	auditErr := postAudit(ctx, receiver, token, records)
	flushCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	traceErr := errors.Join(tp.ForceFlush(flushCtx), tp.Shutdown(flushCtx), exportErrs.join())
	if traceErr != nil {
		traceErr = fmt.Errorf("exporting spans: %w", traceErr)
	}
	return errors.Join(auditErr, traceErr)
}

// play records one call the way go-micro's handleCallTool does: the span's attributes and status, and
// the audit record it would hand to AuditFunc (timestamped when the call ends).
func play(ctx context.Context, tracer trace.Tracer, c call, at time.Time) (auditRecord, trace.Span) {
	traceID := uuid.New().String()
	_, span := tracer.Start(ctx, spanToolCall,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(at),
		trace.WithAttributes(
			attribute.String(attrToolName, c.tool),
			attribute.String(attrTransport, "http"),
			attribute.String(attrTraceID, traceID),
		),
	)
	end := at.Add(deniedSpan)
	if c.deniedReason == "" {
		end = at.Add(c.duration)
	}
	record := auditRecord{TraceID: traceID, Timestamp: end, Tool: c.tool, AccountID: c.account}

	if c.account != "" {
		span.SetAttributes(attribute.String(attrAccountID, c.account))
	}
	if len(c.scopes) > 0 {
		span.SetAttributes(attribute.StringSlice(attrScopesRequired, c.scopes))
		record.ScopesRequired = c.scopes
	}
	switch {
	case c.rateLimited:
		// go-micro: neither mcp.auth.allowed nor the scopes go on a rate-limited call's record.
		span.SetAttributes(attribute.Bool(attrRateLimited, true))
		fail(span, fmt.Errorf("rate limit exceeded for tool %s", c.tool), end)
		record.ScopesRequired = nil
		record.DeniedReason = c.deniedReason
	case c.deniedReason != "":
		span.SetAttributes(attribute.Bool(attrAuthAllowed, false), attribute.String(attrAuthDeniedReason, c.deniedReason))
		fail(span, errors.New(c.deniedReason), end)
		record.DeniedReason = c.deniedReason
	default:
		span.SetAttributes(attribute.Bool(attrAuthAllowed, true))
		record.Allowed = true
		record.Duration = c.duration
		if c.err != "" {
			fail(span, errors.New(c.err), end)
			record.Error = c.err
		} else {
			span.SetStatus(codes.Ok, "")
		}
	}
	span.End(trace.WithTimestamp(end))
	return record, span
}

func fail(span trace.Span, err error, at time.Time) {
	span.RecordError(err, trace.WithTimestamp(at))
	span.SetStatus(codes.Error, err.Error())
}

// exporterOptions: protobuf (the exporter's default) with gzip, to RECEIVER_URL/v1/traces with the
// ingest token, unless the standard OTEL_EXPORTER_OTLP_* variables say otherwise.
func exporterOptions(receiver, token string) []otlptracehttp.Option {
	opts := []otlptracehttp.Option{otlptracehttp.WithCompression(otlptracehttp.GzipCompression)}
	if !anyEnv("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
		opts = append(opts, otlptracehttp.WithEndpointURL(receiver+"/v1/traces"))
	}
	if token != "" && !anyEnv("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
		opts = append(opts, otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer " + token}))
	}
	return opts
}

// postAudit sends the records as one JSON array, as a gateway posting a batch would.
func postAudit(ctx context.Context, receiver, token string, records []auditRecord) error {
	body, err := json.Marshal(records)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, receiver+"/v1/audit", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST /v1/audit: %w", err)
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /v1/audit: %s: %s", res.Status, bytes.TrimSpace(answer))
	}
	log.Printf("POST /v1/audit: %s %s", res.Status, bytes.TrimSpace(answer))
	return nil
}

// errorList collects errors from the exporter's goroutine.
type errorList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorList) join() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func anyEnv(names ...string) bool {
	for _, name := range names {
		if os.Getenv(name) != "" {
			return true
		}
	}
	return false
}
