package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// outcome is what one request came to.
type outcome struct {
	status   int
	header   http.Header
	response []byte
	err      error
	duration time.Duration
}

// The header names as http.Header keys them, written out so that no
// request computes them again.
const (
	canonicalID        = "Webhook-Id"
	canonicalTimestamp = "Webhook-Timestamp"
	canonicalSignature = "Webhook-Signature"
)

// send makes one request: headers, signature and the Transport's call.
func (d *Dispatcher) send(reg *registration, dl *Delivery) (out outcome) {
	hook := &reg.hook
	start := d.clock.Now()
	defer func() {
		// The Transport is the host's code: a panic there is one failed
		// attempt, not the end of the host's process.
		if p := recover(); p != nil {
			out = outcome{err: fmt.Errorf("panic: %v", p)}
		}
		out.duration = d.clock.Now().Sub(start)
		if out.err != nil {
			out.err = scrub(out.err, hook.URL)
		}
	}()
	req := &Request{URL: hook.URL, Header: make(http.Header, 5), Body: dl.Body,
		InsecureSSL: hook.InsecureSSL, WebhookID: hook.ID, EventIDs: dl.EventIDs}
	// One array backs the three values that change per request.
	vals := [3]string{dl.ID, strconv.FormatInt(start.Unix(), 10)}
	h := req.Header
	h["Content-Type"] = d.contentType
	h["User-Agent"] = d.agent
	h[canonicalID] = vals[0:1:1]
	h[canonicalTimestamp] = vals[1:2:2]
	if hook.Signature != "" {
		m := reg.shared.macs.get(hook.Signature)
		switch d.format {
		case PipelinerSignature:
			vals[2] = signPipeliner(m, dl.Body)
		case StandardSignature:
			vals[2] = signStandard(m, dl.ID, start, dl.Body)
		}
		reg.shared.macs.put(m)
		h[canonicalSignature] = vals[2:3:3]
	}
	ctx := d.ctx
	if d.attemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.attemptTimeout)
		defer cancel()
	}
	resp, err := d.transport.Send(ctx, req)
	switch {
	case err != nil:
		return outcome{err: err}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return outcome{status: resp.StatusCode, header: resp.Header, response: resp.Body,
			err: fmt.Errorf("receiver answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))}
	}
	return outcome{status: resp.StatusCode, header: resp.Header, response: resp.Body}
}

// redactURL returns rawURL without its user-info: a password, or a token
// in the user's place, is the receiver's secret, and must not reach a log
// line or an Observer.
func redactURL(rawURL string) string {
	if !strings.Contains(rawURL, "@") {
		return rawURL // no user-info, and nothing to parse
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	u.User = nil
	return u.String()
}

// scrub removes the user-info of rawURL from err's message, where a
// Transport may have quoted the URL: whole, or with the password masked
// as net/http does, which still shows the user, often a token itself.
func scrub(err error, rawURL string) error {
	u, perr := url.Parse(rawURL)
	if perr != nil || u.User == nil {
		return err
	}
	msg := err.Error()
	// As the URL is written, as url.URL writes it, and as net/http masks
	// it; only where a URL's user-info stands, between "//" and "@".
	_, authority, _ := strings.Cut(rawURL, "//")
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	written := authority[:max(strings.LastIndex(authority, "@"), 0)]
	for _, info := range []string{written, u.User.String(), u.User.Username() + ":***"} {
		if info != "" {
			msg = strings.ReplaceAll(msg, "//"+info+"@", "//")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &scrubbed{msg: msg, err: err}
}

// scrubbed is an error whose message lost a URL's user-info; errors.Is and
// errors.As still see the error it came from.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// report tells the Logger and the Observer about an attempt.
func (d *Dispatcher) report(a Attempt) {
	level, msg := slog.LevelDebug, "webhook: delivered"
	attrs := []slog.Attr{slog.String("space", a.Space), slog.String("webhook_id", a.WebhookID), slog.String("delivery_id", a.DeliveryID),
		slog.String("url", a.URL), slog.Int("attempt", a.Attempt), slog.Int("status", a.StatusCode)}
	if a.Err != nil {
		level, msg = slog.LevelWarn, "webhook: delivery failed"
		if a.Dropped {
			msg = "webhook: delivery dropped"
		}
		attrs = append(attrs, slog.String("error", a.Err.Error()), slog.Bool("dead", a.Dead))
		if !a.RetryAt.IsZero() {
			attrs = append(attrs, slog.Time("retry_at", a.RetryAt))
		}
	}
	d.log.LogAttrs(context.Background(), level, msg, attrs...)
	if a.Disabled != nil {
		d.log.LogAttrs(context.Background(), slog.LevelWarn, "webhook: registration disabled",
			slog.String("webhook_id", a.WebhookID), slog.String("reason", a.Disabled.Reason))
	}
	if d.observe != nil {
		d.observe(a)
	}
}
