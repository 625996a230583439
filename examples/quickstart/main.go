// Quickstart walks through Pipeliner's webhook tutorial with no outside
// service: it starts a local request bin, registers a signed webhook on
// Account.Create, "creates an account", and prints the request the bin got
// and whether its signature verifies. The bin is down for the first
// attempt, so the delivery is retried, with the same webhook-id.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/crmhook/webhook"
)

// signature is the key the receiver and the sender share; Pipeliner
// requires a UUID.
const signature = "3f2a9c1e-8b7d-4e6f-a5c4-1d2e3f4a5b6c"

type received struct {
	header http.Header
	body   []byte
}

func main() {
	log.SetFlags(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The request bin: answers 503 once, then keeps the first request it
	// accepts and answers 200.
	bin := make(chan received, 1)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			http.Error(w, "briefly down", http.StatusServiceUnavailable)
			return
		}
		select {
		case bin <- received{r.Header.Clone(), body}:
		default:
		}
	}))
	defer srv.Close()

	// The bin listens on loopback, which the default policy refuses, so
	// that a registered URL cannot reach the CRM's own network. Here it is
	// allowed, and only it.
	policy := webhook.AddressPolicy{AllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{Addresses: policy})
	if err != nil {
		log.Fatal(err)
	}
	// The team space of the CRM's tenant; "" is the default one.
	const space = "acme"
	hook, err := reg.Create(ctx, space, webhook.Webhook{
		URL:       srv.URL + "/bin",
		Events:    []string{"Account.Create"},
		Signature: signature,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("registered webhook %s on %v -> %s\n\n", hook.ID, hook.Events, hook.URL)

	transport := webhook.NewHTTPTransport(webhook.HTTPConfig{AddressPolicy: policy})
	defer transport.Close()
	d, err := webhook.NewDispatcher(reg, webhook.Config{
		Transport: transport,
		// Standard Webhooks' schedule starts at 5 s; the tutorial is in a hurry.
		RetrySchedule: []time.Duration{200 * time.Millisecond},
		// The Observer below tells the story; the library's own log lines
		// would repeat it.
		Logger: slog.New(slog.DiscardHandler),
		Observer: func(a webhook.Attempt) {
			if a.Err != nil {
				fmt.Printf("attempt %d of delivery %s failed: %v; retry at %s\n",
					a.Attempt, a.DeliveryID, a.Err, a.RetryAt.Format(time.TimeOnly))
				return
			}
			fmt.Printf("attempt %d of delivery %s: %d in %v\n\n", a.Attempt, a.DeliveryID, a.StatusCode, a.Duration.Round(time.Millisecond))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// The CRM creates an account and hands the change to the dispatcher.
	err = d.Dispatch(ctx, webhook.Event{
		Space: space,
		Name:  "Account.Create",
		Data: json.RawMessage(`{"id":"9f1c1f84-1c36-4b8e-9a0e-5c3f0f6f2b11","name":"Acme Corp",` +
			`"email1":"sales@acme.example","owner_id":"9900cce6-bcd6-412a-bcd1-1904556c949a"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	// Flush waits for the delivery, retry included; Close then stops the
	// Dispatcher's goroutines.
	if err := d.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		log.Fatal(err)
	}

	var got received
	select {
	case got = <-bin:
	case <-ctx.Done():
		log.Fatal("the request bin got nothing")
	}
	fmt.Println("POST /bin")
	names := make([]string, 0, len(got.header))
	for name := range got.header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Printf("%s: %s\n", name, got.header.Get(name))
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got.body, "", "  "); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\n%s\n\n", pretty.Bytes())

	if err := webhook.VerifySignature(signature, got.body, got.header.Get(webhook.HeaderSignature)); err != nil {
		fmt.Println("signature: NOT verified:", err)
		os.Exit(1)
	}
	fmt.Println("signature: verified")
}
