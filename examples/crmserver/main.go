// Crmserver is a small CRM service that uses the webhook library end to
// end, with nothing else running:
//
//   - Accounts and contacts, kept in memory per team space, are served by
//     a JSON REST API of Pipeliner's shape (crm.go):
//     /api/v100/rest/spaces/{space}/entities/Accounts[/{id}] and Contacts.
//   - The library's Handler serves the tenants' registrations beside them,
//     at Pipeliner's /api/v100/rest/spaces/{space}/entities/Webhooks, each
//     space seeing only its own.
//   - Every write fires its events through one Dispatcher, with the record
//     before an update as Previous (for on-field-change) and OwnerChanged
//     when owner_id changes, and with the request's context, which
//     webhook.CarrySkipKey made carry the request's Webhook-Skip-Key.
//   - An Expander loads a contact's account into it for registrations that
//     say "expand" (expand.go).
//
// Run it and paste the curl lines it prints:
//
//	go run ./examples/crmserver [-addr 127.0.0.1:8080] [-receiver URL] [-allow-loopback=true]
//
// Without -receiver, it starts a receiver of its own on loopback, which
// prints what it gets and checks the signature.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crmhook/webhook"
	"github.com/tidwall/gjson"
)

const (
	// webhooksPath is where Pipeliner serves its Webhook entity.
	webhooksPath = "/api/v100/rest/spaces/{space}/entities/Webhooks"
	// shutdownTimeout bounds the wait for requests in flight, of the API
	// and of webhooks, at shutdown.
	shutdownTimeout = 10 * time.Second
	// flushTimeout bounds the wait for the webhooks still pending at
	// shutdown.
	flushTimeout = 5 * time.Second
	// The team space, webhook signature (a UUID, as Pipeliner requires) and
	// account id of the printed curl lines.
	demoSpace     = "acme"
	demoSignature = "3f2a9c1e-8b7d-4e6f-a5c4-1d2e3f4a5b6c"
	demoAccount   = "9f1c1f84-1c36-4b8e-9a0e-5c3f0f6f2b11"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "crmserver:", err)
		os.Exit(1)
	}
}

// run serves the CRM until ctx ends, then shuts down: the API stops taking
// requests, and the Dispatcher lets the webhook requests in flight finish.
// It prints the curl lines and what happens to stdout, logs to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	flags := flag.NewFlagSet("crmserver", flag.ContinueOnError)
	flags.SetOutput(stderr)
	addr := flags.String("addr", "127.0.0.1:8080", "the `address` the CRM's API listens on; port 0 picks a free one")
	receiver := flags.String("receiver", "", "the receiver `URL` that the printed curl line registers; empty starts one on loopback that prints what it gets")
	allowLoopback := flags.Bool("allow-loopback", true, "let registrations and webhook requests reach 127.0.0.1 and ::1, where a demo's receivers listen (write the address: the guard refuses the name localhost)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	out := &syncWriter{w: stdout}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	// The SSRF guard refuses loopback, so that a tenant cannot make the
	// service POST to itself or its network. The demo allows loopback and
	// only it, in both places that check: registration and dialling. A
	// production service keeps the guard (the zero AddressPolicy).
	var policy webhook.AddressPolicy
	if *allowLoopback {
		policy.AllowedPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	}
	if *receiver == "" {
		url, stop, err := startReceiver(out, demoSignature)
		if err != nil {
			return err
		}
		defer stop()
		*receiver = url
	}
	svc, err := newService(ctx, policy, out, logger)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		err = errors.Join(err, svc.close(ctx))
	}()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprint(out, curlLines("http://"+reachable(ln.Addr()), *receiver))
	return serve(ctx, ln, svc.api, logger, out)
}

// service is the CRM and its webhooks, wired together.
type service struct {
	reg *webhook.Registry
	d   *webhook.Dispatcher
	api http.Handler // the CRM's API and the webhook Handler
	out io.Writer
}

// newService wires the CRM to a Registry and a Dispatcher, whose default
// Transport takes the Registry's AddressPolicy, and mounts the webhook
// Handler beside the CRM's API.
func newService(ctx context.Context, policy webhook.AddressPolicy, out io.Writer, logger *slog.Logger) (*service, error) {
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{Addresses: policy, Logger: logger})
	if err != nil {
		return nil, err
	}
	s := &service{reg: reg, out: out}
	c := newCRM(logger)
	s.d, err = webhook.NewDispatcher(reg, webhook.Config{
		Expander: c,
		Observer: func(a webhook.Attempt) { fmt.Fprint(out, describe(a)) },
		Logger:   slog.New(slog.DiscardHandler), // the Observer tells it all
	})
	if err != nil {
		return nil, errors.Join(err, s.close(ctx))
	}
	c.d = s.d
	hooks, err := webhook.NewHandler(webhook.HandlerConfig{
		Registry: reg,
		Prefix:   webhooksPath,
		// The space is the path's. A real service checks here that the
		// caller may use it (or takes it from the caller's token) and
		// returns an error otherwise: 401, or 404 with webhook.ErrNotFound.
		Space:  func(r *http.Request) (string, error) { return spaceOf(r), nil },
		Logger: logger,
	})
	if err != nil {
		return nil, errors.Join(err, s.close(ctx))
	}
	mux := http.NewServeMux()
	mux.Handle(webhooksPath, hooks)     // list, create
	mux.Handle(webhooksPath+"/", hooks) // get, update, delete, batch-delete, batch-modify
	c.routes(mux)
	// CarrySkipKey puts a request's Webhook-Skip-Key into its context,
	// where Dispatch finds it: the CRM's handlers never read the header.
	s.api = webhook.CarrySkipKey(mux)
	return s, nil
}

// close stops the Dispatcher, which must come after the API stopped, so
// that no write can Dispatch any more, then what it used.
func (s *service) close(ctx context.Context) error {
	if s.d == nil {
		return s.reg.Close()
	}
	// A MemoryQueue's pending deliveries end with the process: Flush gives
	// them a few seconds to go out (a durable Queue would keep them for
	// the next start instead). Close then lets the requests in flight
	// finish until ctx ends.
	flush, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	if err := s.d.Flush(flush); err != nil {
		fmt.Fprintln(s.out, "webhooks still pending are dropped:", err)
	}
	return errors.Join(s.d.Close(ctx), s.reg.Close())
}

// serve serves h on ln until ctx ends, then lets the requests in flight
// finish.
func serve(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger, out io.Writer) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(out, "shutting down")
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	return srv.Shutdown(ctx)
}

// reachable returns the host:port a client dials to reach a listener:
// the listener's, or loopback's for an unspecified address (":8080").
func reachable(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil || !ap.Addr().IsUnspecified() {
		return a.String()
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()).String()
}

// curlLines returns the walkthrough: curl lines that work as written
// against the API at base, with a comment before each.
func curlLines(base, receiver string) string {
	api := base + "/api/v100/rest/spaces/" + demoSpace + "/entities/"
	url, _ := json.Marshal(receiver)
	hook := `{"url":` + string(url) + `,"events":["Account.*","Contact.*"],"signature":"` + demoSignature + `",` +
		`"options":{"skip_keys":["import"],"entity":{"Account":{"on-field-change":["name","owner_id"]},` +
		`"Contact":{"expand":["account"]}}}}`
	var b strings.Builder
	fmt.Fprintf(&b, "CRM API on %s; a receiver on %s\n\n", base, receiver)
	step := func(comment, method, url, header, body string) {
		fmt.Fprintf(&b, "# %s\ncurl -sS", strings.ReplaceAll(comment, "\n", "\n# "))
		if method != "GET" {
			fmt.Fprintf(&b, " -X %s", method)
		}
		fmt.Fprintf(&b, " %s", shellQuote(url))
		if header != "" {
			fmt.Fprintf(&b, " -H %s", shellQuote(header))
		}
		if body != "" {
			fmt.Fprintf(&b, " -H 'Content-Type: application/json' -d %s", shellQuote(body))
		}
		b.WriteString("\n")
	}
	step(`Register a signed webhook in team space "`+demoSpace+`": account updates fire only when name or`+
		"\nowner_id change, contacts come with their account expanded, writes marked \"import\" fire nothing",
		"POST", api+"Webhooks", "", hook)
	step("Create an account (Account.Create)", "POST", api+"Accounts", "",
		`{"id":"`+demoAccount+`","name":"Acme Corp","owner_id":"u1"}`)
	step("Create a contact of it (Contact.Create, with the account in \"account\")", "POST", api+"Contacts", "",
		`{"first_name":"Ada","email1":"ada@acme.example","account_id":"`+demoAccount+`"}`)
	step("Rename the account and give it a new owner (Account.Update and Account.OwnerChanged)", "PATCH",
		api+"Accounts/"+demoAccount, "", `{"name":"Acme Corporation","owner_id":"u2"}`)
	step("Change only its phone: on-field-change watches name and owner_id, so nothing is sent", "PATCH",
		api+"Accounts/"+demoAccount, "", `{"phone1":"+1 555 0100"}`)
	step("Create an account during an import: its Webhook-Skip-Key is in skip_keys, so nothing is sent", "POST",
		api+"Accounts", webhook.HeaderSkipKey+": import", `{"name":"Imported Ltd","owner_id":"u1"}`)
	step("List the space's webhooks", "GET", api+"Webhooks", "", "")
	b.WriteString("\nCtrl-C stops the server.\n")
	return b.String()
}

// startReceiver starts the receiver of a demo without one of its own on
// loopback: it prints every request it gets, item by item, and whether its
// signature verifies with secret. It returns the URL to register, and the
// function that stops it.
func startReceiver(out io.Writer, secret string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhook.DefaultMaxBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// On the bytes as received, before decoding.
		verdict := "signature verified"
		if err := webhook.VerifySignature(secret, body, r.Header.Get(webhook.HeaderSignature)); err != nil {
			verdict = fmt.Sprintf("signature NOT verified with %s: %v", secret, err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "receiver: %s %s, webhook-id %s, %s\n", r.Method, r.URL.Path, r.Header.Get(webhook.HeaderID), verdict)
		for _, item := range gjson.ParseBytes(body).Array() {
			fmt.Fprintf(&b, "  %s in %q: %s\n", item.Get("event"), item.Get("team_space_id"), item.Get("entity").Raw)
		}
		io.WriteString(out, b.String())
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/hook", func() { srv.Close() }, nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// describe returns the line the Observer prints for an attempt.
func describe(a webhook.Attempt) string {
	switch {
	case a.Dropped:
		return fmt.Sprintf("webhook %s: delivery %s dropped: the registration is gone\n", a.WebhookID, a.DeliveryID)
	case a.Err == nil:
		return fmt.Sprintf("webhook %s: delivery %s delivered to %s: %d (events: %d)\n",
			a.WebhookID, a.DeliveryID, a.URL, a.StatusCode, len(a.EventIDs))
	case a.Dead:
		return fmt.Sprintf("webhook %s: delivery %s failed for good: %v\n", a.WebhookID, a.DeliveryID, a.Err)
	}
	return fmt.Sprintf("webhook %s: delivery %s, attempt %d failed: %v; retry at %s\n",
		a.WebhookID, a.DeliveryID, a.Attempt, a.Err, a.RetryAt.Format(time.TimeOnly))
}

// syncWriter writes what several goroutines print, one Write at a time.
type syncWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
