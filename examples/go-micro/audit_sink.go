package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go-micro.dev/v6/gateway/mcp"
)

// wireRecord is what goes to POST /v1/audit: go-micro's AuditRecord, whose fields and JSON tags the
// receiver reads as they are, plus the optional `gateway` extension naming this gateway.
type wireRecord struct {
	mcp.AuditRecord
	Gateway string `json:"gateway,omitempty"`
}

type sinkConfig struct {
	// URL is the receiver's audit endpoint, e.g. http://127.0.0.1:4318/v1/audit.
	URL string
	// Token, when set, is sent as `Authorization: Bearer <token>`.
	Token   string
	Gateway string
	// Buffer is how many records may wait; beyond it records are dropped and counted.
	Buffer int
	// MaxBatch records per request, at most; a batch also goes out every Interval.
	MaxBatch int
	Interval time.Duration
	Logger   *log.Logger
}

// auditSink is a go-micro AuditFunc that never holds up a tool call: Audit only enqueues, and one
// goroutine posts NDJSON batches to the receiver. A full buffer drops the record (counted, warned
// once); a refused or failed batch is counted and logged, retried only when the receiver asks for it.
type auditSink struct {
	cfg     sinkConfig
	client  *http.Client
	records chan mcp.AuditRecord
	done    chan struct{}

	mu     sync.RWMutex // guards closed against a send on the closed channel
	closed bool

	sent, dropped, failed atomic.Int64
	warnFull              sync.Once
}

// SinkStats counts what happened to the records handed to the sink.
type SinkStats struct {
	Sent    int64 `json:"sent"`
	Dropped int64 `json:"dropped"`
	Failed  int64 `json:"failed"`
}

func newAuditSink(cfg sinkConfig) *auditSink {
	s := &auditSink{
		cfg:     cfg,
		client:  &http.Client{Timeout: 10 * time.Second},
		records: make(chan mcp.AuditRecord, cfg.Buffer),
		done:    make(chan struct{}),
	}
	go s.run()
	return s
}

// Audit is the gateway's AuditFunc. It returns at once.
func (s *auditSink) Audit(record mcp.AuditRecord) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.dropped.Add(1)
		return
	}
	select {
	case s.records <- record:
	default:
		s.dropped.Add(1)
		s.warnFull.Do(func() {
			s.cfg.Logger.Printf("audit buffer full (%d records): dropping records until the receiver catches up", s.cfg.Buffer)
		})
	}
}

// Close stops accepting records and waits, until ctx ends, for the queued ones to be sent.
func (s *auditSink) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.records)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit sink: %d records may be unsent: %w", len(s.records), ctx.Err())
	}
}

func (s *auditSink) Stats() SinkStats {
	return SinkStats{Sent: s.sent.Load(), Dropped: s.dropped.Load(), Failed: s.failed.Load()}
}

func (s *auditSink) run() {
	defer close(s.done)
	ticker := time.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	batch := make([]mcp.AuditRecord, 0, s.cfg.MaxBatch)
	flush := func() {
		if len(batch) > 0 {
			s.send(batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case record, ok := <-s.records:
			if !ok {
				flush()
				return
			}
			batch = append(batch, record)
			if len(batch) >= s.cfg.MaxBatch {
				flush()
			}
		case <-ticker.C:
			flush()
		}
	}
}

// maxAttempts bounds how often one batch is tried; retries wait as long as the receiver's Retry-After.
const maxAttempts = 4

func (s *auditSink) send(batch []mcp.AuditRecord) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body) // one JSON object per line: NDJSON
	n := 0
	for _, record := range batch {
		if err := enc.Encode(wireRecord{AuditRecord: record, Gateway: s.cfg.Gateway}); err != nil {
			s.failed.Add(1)
			s.cfg.Logger.Printf("audit record of %s not encodable, dropped: %v", record.Tool, err)
			continue
		}
		n++
	}
	for attempt := 1; n > 0; attempt++ {
		accepted, wait, err := s.post(body.Bytes())
		s.sent.Add(int64(accepted))
		if err == nil {
			return
		}
		if wait < 0 || attempt == maxAttempts {
			s.failed.Add(int64(n - accepted))
			s.cfg.Logger.Printf("audit batch: %d of %d records not delivered (attempt %d): %v", n-accepted, n, attempt, err)
			return
		}
		time.Sleep(wait)
	}
}

// post sends one NDJSON body and returns how many records the receiver accepted. On failure it also
// says how long to wait before a retry, or -1 when a retry cannot help: the receiver refused the
// token or the records themselves (a 400 lists them; the others in the batch were accepted).
func (s *auditSink) post(body []byte) (accepted int, wait time.Duration, err error) {
	req, err := http.NewRequest(http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, -1, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	res, err := s.client.Do(req)
	if err != nil {
		return 0, time.Second, err // not reached, refused, reset or timed out: worth another try
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var reply struct {
		Accepted int `json:"accepted"`
	}
	_ = json.Unmarshal(answer, &reply)
	failure := fmt.Errorf("%s: %s", res.Status, bytes.TrimSpace(answer))
	switch {
	case res.StatusCode == http.StatusAccepted:
		return reply.Accepted, 0, nil
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		wait := time.Second
		if seconds, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && seconds > 0 {
			wait = time.Duration(seconds) * time.Second
		}
		return 0, wait, failure
	case res.StatusCode == http.StatusBadRequest:
		return reply.Accepted, -1, failure
	default:
		return 0, -1, failure
	}
}
