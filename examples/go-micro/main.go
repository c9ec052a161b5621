// Command go-micro runs a go-micro v6 MCP gateway (go-micro.dev/v6/gateway/mcp) over a small `users`
// service in the same process, and reports every tool call to the MCP audit analytics receiver: audit
// records through an AuditFunc (batched NDJSON to $RECEIVER_URL/v1/audit, off the call path) and
// `mcp.tool.call` spans through a TraceProvider (OTLP/HTTP to $RECEIVER_URL/v1/traces).
//
//	RECEIVER_URL=http://127.0.0.1:4318 INGEST_TOKEN=secret go run . -addr 127.0.0.1:3000
//	go run . -drive 10   # 10 allowed calls, one failing and three denied ones; then flush and exit
//
// Tokens are go-micro JWTs signed with a key made at start; serve mode prints one per demo account.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go-micro.dev/v6/auth"
	"go-micro.dev/v6/auth/jwt"
	microerrors "go-micro.dev/v6/errors"
	"go-micro.dev/v6/gateway/mcp"
	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/server"
	"go-micro.dev/v6/service"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Users is the demo service. Its endpoints become the tools users.Users.Get and users.Users.Delete.
type Users struct {
	mu    sync.Mutex
	names map[string]string
}

type UserRequest struct {
	ID string `json:"id" description:"User id, e.g. \"1\""`
}

type UserResponse struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Get returns one user by id, or a 404 error.
//
// @example {"id": "1"}
func (u *Users) Get(ctx context.Context, req *UserRequest, rsp *UserResponse) error {
	time.Sleep(2 * time.Millisecond) // the lookup
	u.mu.Lock()
	defer u.mu.Unlock()
	name, ok := u.names[req.ID]
	if !ok {
		return microerrors.NotFound("users", "user %s not found", req.ID)
	}
	*rsp = UserResponse{ID: req.ID, Name: name}
	return nil
}

// Delete removes one user by id.
//
// @example {"id": "3"}
func (u *Users) Delete(ctx context.Context, req *UserRequest, rsp *UserResponse) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	*rsp = UserResponse{ID: req.ID, Name: u.names[req.ID]}
	delete(u.names, req.ID)
	return nil
}

// The demo accounts and their scopes: users.Users.Get needs users:read, Delete needs users:admin.
var accounts = map[string][]string{
	"acct-42": {"users:read"},
	"acct-7":  {"users:read", "users:admin"},
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("go-micro-example: ")
	addr := flag.String("addr", "127.0.0.1:3000", "address of the MCP gateway (HTTP)")
	drive := flag.Int("drive", 0, "make this many allowed calls, plus one failing and three denied ones, through the gateway, then exit")
	name := flag.String("gateway", "go-micro-example", "gateway name sent with each audit record")
	flag.Parse()
	if err := run(*addr, *drive, *name); err != nil {
		log.Fatal(err)
	}
}

func run(addr string, drive int, gatewayName string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	receiver := strings.TrimRight(envOr("RECEIVER_URL", "http://127.0.0.1:4318"), "/")
	token := os.Getenv("INGEST_TOKEN")
	logger := log.New(os.Stderr, "go-micro-example: ", 0)

	// The demo service, registered in an in-memory registry the gateway discovers it from. Not calling
	// svc.Init keeps go-micro from parsing this program's flags.
	reg := registry.NewMemoryRegistry()
	svc := service.New(service.Name("users"), service.Registry(reg), service.Address("127.0.0.1:0"))
	users := &Users{names: map[string]string{"1": "Ada", "2": "Grace", "3": "Edsger"}}
	if err := svc.Handle(users,
		server.WithEndpointScopes("Users.Get", "users:read"),
		server.WithEndpointScopes("Users.Delete", "users:admin"),
	); err != nil {
		return err
	}
	if err := svc.Start(); err != nil {
		return fmt.Errorf("starting the users service: %w", err)
	}
	defer svc.Stop()

	authProvider, tokens, err := demoAuth()
	if err != nil {
		return err
	}

	sink := newAuditSink(sinkConfig{
		URL: receiver + "/v1/audit", Token: token, Gateway: gatewayName,
		Buffer: 4096, MaxBatch: 500, Interval: time.Second, Logger: logger,
	})
	var exportErrors atomic.Int64 // the batcher reports failed exports here, not to Shutdown
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		exportErrors.Add(1)
		logger.Printf("OpenTelemetry: %v", err)
	}))
	calls := &spanLog{}
	tp, err := tracerProvider(ctx, receiver, token, calls)
	if err != nil {
		return err
	}

	go func() {
		err := mcp.Serve(mcp.Options{
			Registry:      reg,
			Address:       addr,
			Client:        svc.Client(),
			Context:       ctx,
			Logger:        logger,
			Auth:          authProvider,
			AuditFunc:     sink.Audit,
			TraceProvider: tp,
		})
		logger.Fatalf("MCP gateway stopped: %v", err)
	}()
	gateway := "http://" + addr
	if err := waitForTools(ctx, gateway, "users.Users.Get", "users.Users.Delete"); err != nil {
		return err
	}

	var driveErr error
	if drive > 0 {
		driveErr = driveCalls(gateway, drive, tokens)
	} else {
		for id, t := range tokens {
			logger.Printf("account %s %v: Authorization: Bearer %s", id, accounts[id], t)
		}
		logger.Printf("MCP gateway on %s: curl -X POST %s/mcp/call -H 'Authorization: Bearer …' -d '{\"tool\":\"users.Users.Get\",\"input\":{\"id\":\"1\"}}'", gateway, gateway)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
		<-stop
	}

	// Shutdown: stop watching the registry, then flush audit records and spans.
	cancel()
	flushCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
	defer done()
	flushErr := errors.Join(sink.Close(flushCtx), tp.Shutdown(flushCtx))
	stats := sink.Stats()
	if drive > 0 {
		report := struct {
			Audit SinkStats  `json:"audit"`
			Spans []spanInfo `json:"spans"`
		}{stats, calls.list()}
		_ = json.NewEncoder(os.Stdout).Encode(report)
	}
	logger.Printf("audit records: %d sent, %d dropped, %d not delivered", stats.Sent, stats.Dropped, stats.Failed)
	if lost := stats.Dropped + stats.Failed; lost > 0 {
		flushErr = errors.Join(flushErr, fmt.Errorf("%d audit records lost", lost))
	}
	if n := exportErrors.Load(); n > 0 {
		flushErr = errors.Join(flushErr, fmt.Errorf("%d span exports failed", n))
	}
	return errors.Join(driveErr, flushErr)
}

// tracerProvider exports spans with the real OTLP/HTTP exporter (protobuf, gzip) to the receiver;
// the standard OTEL_EXPORTER_OTLP_* variables, when set, take precedence. calls sees every span too.
func tracerProvider(ctx context.Context, receiver, token string, calls sdktrace.SpanProcessor) (*sdktrace.TracerProvider, error) {
	opts := []otlptracehttp.Option{otlptracehttp.WithCompression(otlptracehttp.GzipCompression)}
	if !anyEnv("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
		opts = append(opts, otlptracehttp.WithEndpointURL(receiver+"/v1/traces"))
	}
	if token != "" && !anyEnv("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
		opts = append(opts, otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer " + token}))
	}
	exporter, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "go-micro-example")),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(calls),
	), nil
}

// demoAuth is go-micro's JWT auth provider with a key pair made now, and a token per demo account.
func demoAuth() (auth.Auth, map[string]string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	public, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	encode := func(kind string, der []byte) string {
		return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}))
	}
	a := jwt.NewAuth(
		auth.PrivateKey(encode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))),
		auth.PublicKey(encode("PUBLIC KEY", public)),
	)
	tokens := make(map[string]string, len(accounts))
	for id, scopes := range accounts {
		account, err := a.Generate(id, auth.WithScopes(scopes...))
		if err != nil {
			return nil, nil, fmt.Errorf("account %s: %w", id, err)
		}
		t, err := a.Token(auth.WithCredentials(account.ID, account.Secret), auth.WithExpiry(24*time.Hour))
		if err != nil {
			return nil, nil, fmt.Errorf("token for %s: %w", id, err)
		}
		tokens[id] = t.AccessToken
	}
	return a, tokens, nil
}

// waitForTools polls the gateway's tool list until it lists every tool named.
func waitForTools(ctx context.Context, gateway string, names ...string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var list struct {
			Tools []struct{ Name string } `json:"tools"`
		}
		if res, err := http.Get(gateway + "/mcp/tools"); err == nil {
			_ = json.NewDecoder(res.Body).Decode(&list)
			res.Body.Close()
		}
		found := 0
		for _, t := range list.Tools {
			for _, name := range names {
				if t.Name == name {
					found++
				}
			}
		}
		if found == len(names) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the MCP gateway on %s did not list %v within 15s", gateway, names)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// driveCalls plays agents: n allowed calls (acct-42 and acct-7 in turn), then one of each failure the
// gateway reports.
func driveCalls(gateway string, n int, tokens map[string]string) error {
	type call struct {
		tool, id, bearer string
		want             int
	}
	var script []call
	for i := 0; i < n; i++ { // the two accounts take turns
		account := []string{"acct-42", "acct-7"}[i%2]
		script = append(script, call{"users.Users.Get", fmt.Sprint(1 + i%3), tokens[account], http.StatusOK})
	}
	script = append(script,
		call{"users.Users.Get", "404", tokens["acct-42"], http.StatusInternalServerError}, // the service errs
		call{"users.Users.Delete", "1", tokens["acct-42"], http.StatusForbidden},          // insufficient scopes
		call{"users.Users.Get", "1", "", http.StatusUnauthorized},                         // missing token
		call{"users.Users.Get", "1", "not-a-jwt", http.StatusUnauthorized},                // invalid token
	)
	var errs []error
	for _, c := range script {
		body, _ := json.Marshal(map[string]any{"tool": c.tool, "input": map[string]string{"id": c.id}})
		req, _ := http.NewRequest(http.MethodPost, gateway+"/mcp/call", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if c.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+c.bearer)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.tool, err))
			continue
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			errs = append(errs, fmt.Errorf("%s %s: answered %s, expected %d", c.tool, c.id, res.Status, c.want))
		}
	}
	return errors.Join(errs...)
}

// spanInfo identifies the span of one tool call: go-micro's trace id (the audit record's trace_id)
// and the OpenTelemetry trace it was exported in.
type spanInfo struct {
	Tool        string `json:"tool"`
	TraceID     string `json:"trace_id"`
	OtelTraceID string `json:"otel_trace_id"`
	OtelSpanID  string `json:"otel_span_id"`
}

// spanLog is a span processor that remembers which OTel trace each tool call went to, for -drive's report.
type spanLog struct {
	mu    sync.Mutex
	spans []spanInfo
}

func (l *spanLog) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (l *spanLog) OnEnd(s sdktrace.ReadOnlySpan) {
	info := spanInfo{OtelTraceID: s.SpanContext().TraceID().String(), OtelSpanID: s.SpanContext().SpanID().String()}
	for _, kv := range s.Attributes() {
		switch kv.Key {
		case "mcp.tool.name":
			info.Tool = kv.Value.AsString()
		case "mcp.trace_id":
			info.TraceID = kv.Value.AsString()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.spans = append(l.spans, info)
}

func (l *spanLog) Shutdown(context.Context) error   { return nil }
func (l *spanLog) ForceFlush(context.Context) error { return nil }

func (l *spanLog) list() []spanInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]spanInfo(nil), l.spans...)
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
