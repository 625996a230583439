package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crmhook/webhook"
)

func ExampleRegistry() {
	ctx := context.Background()
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{})
	if err != nil {
		panic(err)
	}
	// Every call names the team space, which comes from the API call,
	// never from a body.
	hook, err := reg.Create(ctx, "team-1", webhook.Webhook{
		URL:    "https://example.com/hooks",
		Events: []string{"Opportunity.Update"},
		Options: webhook.Options{Entity: map[string]webhook.EntityOptions{
			"Opportunity": {OnFieldChange: []string{"value", "closing_date"}},
		}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(hook.Space, hook.Events, hook.Options.Entity["Opportunity"].OnFieldChange)

	// Another space's id is one that does not exist.
	_, err = reg.Get(ctx, "team-2", hook.ID)
	fmt.Println(errors.Is(err, webhook.ErrNotFound))

	// A Patch changes what it gives and keeps the rest.
	url := "https://example.com/hooks/v2"
	hook, err = reg.Update(ctx, "team-1", hook.ID, webhook.Patch{URL: &url})
	if err != nil {
		panic(err)
	}
	fmt.Println(hook.URL, hook.Events)

	// A bad registration says which fields are wrong and why, all at once.
	_, err = reg.Create(ctx, "team-1", webhook.Webhook{URL: "ftp://example.com/hooks", Events: []string{"Account.Explode"}})
	var fes webhook.FieldErrors
	fmt.Println(errors.Is(err, webhook.ErrInvalid), errors.As(err, &fes))
	for _, fe := range fes {
		fmt.Println(fe.Field)
	}
	// Output:
	// team-1 [Opportunity.Update] [value closing_date]
	// true
	// https://example.com/hooks/v2 [Opportunity.Update]
	// true true
	// events[0]
	// url
}

func ExampleMatcher() {
	ctx := context.Background()
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{})
	if err != nil {
		panic(err)
	}
	for _, w := range []webhook.Webhook{
		{URL: "https://example.com/all-opportunities", Events: []string{"Opportunity.*"}},
		{URL: "https://example.com/open-opportunities", Events: []string{"Opportunity.Update"},
			Options: webhook.Options{Entity: map[string]webhook.EntityOptions{"Opportunity": {
				Filter:   map[string]json.RawMessage{"status": json.RawMessage(`"open"`)},
				FilterOp: map[string]string{"status": "eq"},
			}}}},
		{URL: "https://example.com/other-tenant", Events: []string{"*"}, Space: "team-2"},
	} {
		if _, err := reg.Create(ctx, w.Space, w); err != nil {
			panic(err)
		}
	}
	m := webhook.NewMatcher(reg)
	for _, status := range []string{"open", "won"} {
		hooks, err := m.Match(webhook.Event{
			Name: "Opportunity.Update",
			Data: json.RawMessage(`{"id":"o1","status":"` + status + `"}`),
		})
		if err != nil {
			panic(err)
		}
		fmt.Print(status, ":")
		for _, h := range hooks {
			fmt.Print(" ", h.URL)
		}
		fmt.Println()
	}
	// Output:
	// open: https://example.com/all-opportunities https://example.com/open-opportunities
	// won: https://example.com/all-opportunities
}

func ExampleDispatcher() {
	ctx := context.Background()
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{})
	if err != nil {
		panic(err)
	}
	_, err = reg.Create(ctx, "", webhook.Webhook{
		URL:    "https://example.com/hooks",
		Events: []string{"Contact.Create"},
		Options: webhook.Options{Entity: map[string]webhook.EntityOptions{
			"Contact": {LoadOnly: []string{"id", "email1"}},
		}},
	})
	if err != nil {
		panic(err)
	}
	// A Recorder stands in for the network, as in a host's own tests.
	var rec webhook.Recorder
	d, err := webhook.NewDispatcher(reg, webhook.Config{Transport: &rec})
	if err != nil {
		panic(err)
	}
	defer d.Close(ctx)

	err = d.Dispatch(ctx, webhook.Event{
		Name: "Contact.Create",
		Data: json.RawMessage(`{"id":"c1","email1":"ada@example.com","phone1":"+44 20 0000 0000"}`),
		Time: time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC),
	})
	if err != nil {
		panic(err)
	}
	if err := d.Flush(ctx); err != nil {
		panic(err)
	}
	for _, req := range rec.Requests() {
		var items []struct {
			Event     string          `json:"event"`
			EventTime string          `json:"event_time"`
			Entity    json.RawMessage `json:"entity"`
			Related   json.RawMessage `json:"related_entity"`
		}
		if err := json.Unmarshal(req.Body, &items); err != nil {
			panic(err)
		}
		fmt.Println(req.URL, req.Header.Get("Content-Type"))
		for _, it := range items {
			fmt.Println(it.Event, it.EventTime, string(it.Entity), string(it.Related))
		}
	}
	// Output:
	// https://example.com/hooks application/json
	// Contact.Create 2026-11-26T10:15:00.000000Z {"id":"c1","email1":"ada@example.com"} null
}

func ExampleVerifySignature() {
	const secret = "01234567-abcd-dcba-ffff-000000000000" // the registration's signature

	// A receiver checks the signature on the body as received, before
	// decoding it.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if err := webhook.VerifySignature(secret, body, r.Header.Get(webhook.HeaderSignature)); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	body := `[{"event":"Account.Create","entity":{"id":"a1"}}]`
	for _, sig := range []string{webhook.Sign(secret, []byte(body)), "forged"} {
		req := httptest.NewRequest(http.MethodPost, "/hooks", strings.NewReader(body))
		req.Header.Set(webhook.HeaderSignature, sig)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// 204
	// 401
}

func ExampleVerifyStandard() {
	const secret = "01234567-abcd-dcba-ffff-000000000000" // the registration's signature
	body := []byte(`[{"event":"Account.Create","entity":{"id":"a1"}}]`)
	sent := time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)

	// What a Dispatcher with Config.Signature = StandardSignature sends.
	h := http.Header{}
	h.Set(webhook.HeaderID, "5d3c0e4a-2f6b-4b8e-9c1d-7a0f3e2b1c4d")
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
	h.Set(webhook.HeaderSignature, webhook.SignStandard(secret, h.Get(webhook.HeaderID), sent, body))

	// The receiver refuses requests more than 5 minutes off its clock, so
	// that a captured request cannot be replayed later.
	for _, now := range []time.Time{sent.Add(time.Minute), sent.Add(time.Hour)} {
		fmt.Println(webhook.VerifyStandard(secret, h, body, now, 5*time.Minute))
	}
	// Output:
	// <nil>
	// webhook: signature mismatch: webhook-timestamp is too old: more than 5m0s before now
}

func ExampleDispatcher_Redeliver() {
	ctx := context.Background()
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{})
	if err != nil {
		panic(err)
	}
	hook, err := reg.Create(ctx, "", webhook.Webhook{URL: "https://example.com/hooks", Events: []string{"Task.*"}})
	if err != nil {
		panic(err)
	}
	// A receiver that is down until the operator says otherwise.
	var up atomic.Bool
	var rec webhook.Recorder
	down := transportFunc(func(ctx context.Context, req *webhook.Request) (*webhook.Response, error) {
		if up.Load() {
			return rec.Send(ctx, req)
		}
		return &webhook.Response{StatusCode: http.StatusServiceUnavailable}, nil
	})
	d, err := webhook.NewDispatcher(reg, webhook.Config{Transport: down, RetrySchedule: []time.Duration{},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer d.Close(ctx)
	if err := d.Dispatch(ctx, webhook.Event{ID: "ev-1", Name: "Task.Create", Data: json.RawMessage(`{"id":"t1"}`)}); err != nil {
		panic(err)
	}
	d.Flush(ctx)

	// Without retries left, the delivery is dead: kept, and listed.
	dead, _ := d.Dead(ctx, "", hook.ID)
	fmt.Println(len(dead), dead[0].EventIDs, dead[0].LastError)

	up.Store(true)
	n, _ := d.Redeliver(ctx, "", hook.ID, "") // all of the registration's
	d.Flush(ctx)
	fmt.Println(n, len(rec.Requests()), rec.Requests()[0].Header.Get(webhook.HeaderID) == dead[0].ID)
	// Output:
	// 1 [ev-1] receiver answered 503 Service Unavailable
	// 1 1 true
}

type transportFunc func(ctx context.Context, req *webhook.Request) (*webhook.Response, error)

func (f transportFunc) Send(ctx context.Context, req *webhook.Request) (*webhook.Response, error) {
	return f(ctx, req)
}

func ExampleHandler() {
	ctx := context.Background()
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{})
	if err != nil {
		panic(err)
	}
	defer reg.Close()

	// Mounted where Pipeliner serves the Webhook entity. The space comes
	// from the path here; a real host checks that the caller may use it
	// (or takes it from the caller's token) and fails otherwise.
	const path = "/api/v100/rest/spaces/{space}/entities/Webhooks"
	h, err := webhook.NewHandler(webhook.HandlerConfig{
		Registry: reg,
		Prefix:   path,
		Space:    func(r *http.Request) (string, error) { return r.PathValue("space"), nil },
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle(path, h)     // list, create
	mux.Handle(path+"/", h) // get, update, delete, batch-delete, batch-modify
	srv := httptest.NewServer(mux)
	defer srv.Close()

	call := func(method, space, rest, body string) (status int, answer string) {
		req, _ := http.NewRequest(method, srv.URL+"/api/v100/rest/spaces/"+space+"/entities/Webhooks"+rest, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// A tenant registers a webhook; the id it sends is ignored.
	status, answer := call("POST", "team-1", "", `{"id":"01234567-abcd-dcba-ffff-000000000000",
		"url":"https://example.com/hooks","events":["Account.Create"]}`)
	var created struct{ Data webhook.Webhook }
	json.Unmarshal([]byte(answer), &created)
	fmt.Println(status, created.Data.URL, created.Data.ID != "01234567-abcd-dcba-ffff-000000000000")

	// Another tenant cannot see it: its id is unknown there.
	status, _ = call("GET", "team-2", "/"+created.Data.ID, "")
	fmt.Println(status)

	// Every mistake of a body at once, in Pipeliner's error JSON.
	status, answer = call("PATCH", "team-1", "/"+created.Data.ID, `{"url":"ftp://example.com","insecure_ssl":"yes"}`)
	var invalid struct {
		Name        string
		FieldErrors []struct {
			FieldName string `json:"field_name"`
		} `json:"field_errors"`
	}
	json.Unmarshal([]byte(answer), &invalid)
	fmt.Println(status, invalid.Name, invalid.FieldErrors)
	// Output:
	// 201 https://example.com/hooks true
	// 404
	// 422 ERROR_ENTITY_VALIDATION [{insecure_ssl} {url}]
}

func ExampleCarrySkipKey() {
	ctx := context.Background()
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{})
	if err != nil {
		panic(err)
	}
	// A mail sync that writes back into the CRM lists its own skip key, so
	// that its writes do not come back to it.
	_, err = reg.Create(ctx, "team-1", webhook.Webhook{URL: "https://sync.example.com/hooks", Events: []string{"Contact.*"},
		Options: webhook.Options{SkipKeys: []string{"mail-sync"}}})
	if err != nil {
		panic(err)
	}
	var rec webhook.Recorder
	d, err := webhook.NewDispatcher(reg, webhook.Config{Transport: &rec})
	if err != nil {
		panic(err)
	}
	defer d.Close(ctx)

	// The host's own API hands its request's context to Dispatch and
	// never reads the header: the middleware carries it.
	api := webhook.CarrySkipKey(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/entities/Contacts/")
		err := d.Dispatch(r.Context(), webhook.Event{Space: "team-1", Name: "Contact.Update", Data: json.RawMessage(`{"id":"` + id + `"}`)})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	for id, key := range map[string]string{"c1": "mail-sync", "c2": ""} {
		req := httptest.NewRequest(http.MethodPatch, "/entities/Contacts/"+id, nil)
		if key != "" {
			req.Header.Set(webhook.HeaderSkipKey, key)
		}
		api.ServeHTTP(httptest.NewRecorder(), req)
	}
	d.Flush(ctx)
	for _, req := range rec.Requests() {
		var items []struct{ Entity json.RawMessage }
		json.Unmarshal(req.Body, &items)
		fmt.Println("sent:", string(items[0].Entity))
	}
	// Output:
	// sent: {"id":"c2"}
}
