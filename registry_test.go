package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

const testSignature = "01234567-abcd-dcba-ffff-000000000000"

func validWebhook() Webhook {
	return Webhook{URL: "https://example.com/hooks", Events: []string{"Account.Create"}}
}

// replace returns the Patch that sets every field of w.
func replace(w Webhook) Patch {
	return Patch{URL: &w.URL, Events: &w.Events, Options: &w.Options, InsecureSSL: &w.InsecureSSL, Signature: &w.Signature}
}

// requireFieldError checks that err is a validation error naming field.
func requireFieldError(t *testing.T, err error, field string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, ErrInvalid)
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, field, fe.Field, "error: %v", err)
}

func TestRegistryCreateRejectsInvalidRegistrations(t *testing.T) {
	entity := func(eo EntityOptions) Options { return Options{Entity: map[string]EntityOptions{"Account": eo}} }
	tests := []struct {
		name   string
		change func(w *Webhook)
		field  string
	}{
		{"no events", func(w *Webhook) { w.Events = nil }, "events"},
		{"an event name not in the catalogue", func(w *Webhook) { w.Events = []string{"Account.Explode"} }, "events[0]"},
		{"an entity not in the catalogue", func(w *Webhook) { w.Events = []string{"Account.Create", "Spaceship.*"} }, "events[1]"},
		{"an empty event name", func(w *Webhook) { w.Events = []string{""} }, "events[0]"},
		{"no URL", func(w *Webhook) { w.URL = "" }, "url"},
		{"a relative URL", func(w *Webhook) { w.URL = "/hooks" }, "url"},
		{"a URL that is not http", func(w *Webhook) { w.URL = "ftp://example.com/hooks" }, "url"},
		{"a URL without a host", func(w *Webhook) { w.URL = "https:///hooks" }, "url"},
		{"a URL that does not parse", func(w *Webhook) { w.URL = "http://exa mple.com/%zz" }, "url"},
		{"a signature that is not a UUID", func(w *Webhook) { w.Signature = "my-secret" }, "signature"},
		{"a signature UUID with a bad character", func(w *Webhook) { w.Signature = "01234567-abcd-dcba-ffff-00000000000g" }, "signature"},
		{"chunk_size above 100", func(w *Webhook) { w.Options.ChunkSize = 101 }, "options.chunk_size"},
		{"a negative chunk_size", func(w *Webhook) { w.Options.ChunkSize = -1 }, "options.chunk_size"},
		{"a negative chunk_delay", func(w *Webhook) { w.Options.ChunkDelay = -300 }, "options.chunk_delay"},
		{"an empty skip key", func(w *Webhook) { w.Options.SkipKeys = []string{"sync", ""} }, "options.skip_keys[1]"},
		{"an empty custom entity name", func(w *Webhook) { w.Options.CustomEntityAPIName = []string{""} }, "options.custom_entity_api_name[0]"},
		{"an unknown filter-op", func(w *Webhook) {
			w.Options = entity(EntityOptions{Filter: map[string]json.RawMessage{"name": json.RawMessage(`"Acme"`)},
				FilterOp: map[string]string{"name": "like"}})
		}, "options.entity.Account.filter-op.name"},
		{"a filter-op for a field with no filter", func(w *Webhook) {
			w.Options = entity(EntityOptions{Filter: map[string]json.RawMessage{"name": json.RawMessage(`"Acme"`)},
				FilterOp: map[string]string{"owner_id": "eq"}})
		}, "options.entity.Account.filter-op.owner_id"},
		{"between with one value", func(w *Webhook) {
			w.Options = entity(EntityOptions{Filter: map[string]json.RawMessage{"value": json.RawMessage(`[10]`)},
				FilterOp: map[string]string{"value": "between"}})
		}, "options.entity.Account.filter.value"},
		{"between with three values", func(w *Webhook) {
			w.Options = entity(EntityOptions{Filter: map[string]json.RawMessage{"value": json.RawMessage(`[1,2,3]`)},
				FilterOp: map[string]string{"value": "between"}})
		}, "options.entity.Account.filter.value"},
		{"a filter value that is an object", func(w *Webhook) {
			w.Options = entity(EntityOptions{Filter: map[string]json.RawMessage{"name": json.RawMessage(`{"a":1}`)}})
		}, "options.entity.Account.filter.name"},
		{"a load-only path with an empty name", func(w *Webhook) {
			w.Options = entity(EntityOptions{LoadOnly: []string{"id", "owner..name"}})
		}, "options.entity.Account.load-only[1]"},
		{"an expand path with an empty name", func(w *Webhook) {
			w.Options = entity(EntityOptions{Expand: []string{""}})
		}, "options.entity.Account.expand[0]"},
		{"an on-field-change path with an empty name", func(w *Webhook) {
			w.Options = entity(EntityOptions{OnFieldChange: []string{".name"}})
		}, "options.entity.Account.on-field-change[0]"},
		{"a filter on the related entity", func(w *Webhook) {
			w.Options.RelatedEntity = &EntityOptions{Filter: map[string]json.RawMessage{"name": json.RawMessage(`"x"`)}}
		}, "options.related_entity.filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			r := newTestRegistry()
			kept := mustCreate(t, r, validWebhook())
			w := validWebhook()
			tt.change(&w)
			_, err := r.Create(ctx, w.Space, w)
			requireFieldError(t, err, tt.field)

			// Update validates the same way, and a refusal keeps what was stored.
			w.ID = kept.ID
			_, err = r.Update(ctx, w.Space, w.ID, replace(w))
			requireFieldError(t, err, tt.field)
			list, err := r.List(ctx, "")
			require.NoError(t, err)
			if d := cmp.Diff([]Webhook{kept}, list); d != "" {
				t.Fatalf("registrations after a refused change (-want +got):\n%s", d)
			}
		})
	}
}

func TestRegistryAcceptsChunkSizeBounds(t *testing.T) {
	r := newTestRegistry()
	for _, size := range []int{0, 1, 100} {
		w := validWebhook()
		w.Options.ChunkSize = size
		got := mustCreate(t, r, w)
		require.Equal(t, size, got.Options.ChunkSize, "the stored option is what was given; 0 means the default")
	}
}

func TestRegistryLifecycle(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 10, 0, 0, 700_000_000, time.UTC)
	clock := clockAt(now)
	r := newRegistry(RegistryConfig{Addresses: loopback, Clock: clock})

	created, err := r.Create(ctx, "team-1", Webhook{Space: "ignored", URL: "https://example.com/a", Events: []string{"Account.Create"}})
	require.NoError(t, err)
	require.True(t, isUUID(created.ID), "id %q", created.ID)
	// Pipeliner's times have whole seconds; stored ones match what JSON gives back.
	require.Equal(t, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), created.Created)
	require.Equal(t, created.Created, created.Modified)
	require.Equal(t, "team-1", created.Space)

	got, err := r.Get(ctx, "team-1", created.ID)
	require.NoError(t, err)
	if d := cmp.Diff(created, got); d != "" {
		t.Fatalf("Get (-created +got):\n%s", d)
	}

	clock.Advance(time.Hour)
	url := "https://example.com/b"
	updated, err := r.Update(ctx, "team-1", created.ID, Patch{URL: &url})
	require.NoError(t, err)
	require.Equal(t, "https://example.com/b", updated.URL)
	require.Equal(t, "team-1", updated.Space)
	require.Equal(t, created.Created, updated.Created, "Update keeps Created")
	require.Equal(t, time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC), updated.Modified)

	other := mustCreate(t, r, Webhook{Space: "team-1", URL: "https://example.com/c", Events: []string{"*"}})
	mustCreate(t, r, Webhook{Space: "team-2", URL: "https://example.com/d", Events: []string{"*"}})
	list, err := r.List(ctx, "team-1")
	require.NoError(t, err)
	if d := cmp.Diff([]Webhook{updated, other}, list); d != "" {
		t.Fatalf("List in creation order (-want +got):\n%s", d)
	}

	require.NoError(t, r.Delete(ctx, "team-1", created.ID))
	_, err = r.Get(ctx, "team-1", created.ID)
	require.ErrorIs(t, err, ErrNotFound)
	list, err = r.List(ctx, "team-1")
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func TestRegistryUnknownIDIsNotFound(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	const id = "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b"
	_, err := r.Get(ctx, "", id)
	require.ErrorIs(t, err, ErrNotFound)
	w := validWebhook()
	w.ID = id
	_, err = r.Update(ctx, w.Space, w.ID, replace(w))
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, r.Delete(ctx, "", id), ErrNotFound)
	require.False(t, errors.Is(err, ErrInvalid))
}

func TestRegistryKeepsItsOwnCopies(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	w := validWebhook()
	w.Events = []string{"Contact.Create"}
	w.Options.Entity = map[string]EntityOptions{"Contact": {LoadOnly: []string{"id"},
		Filter: map[string]json.RawMessage{"email1": json.RawMessage(`"a@example.com"`)}}}
	stored := mustCreate(t, r, w)

	// The caller's values, and what Get returned, are the caller's to change.
	w.Events[0] = "Contact.Delete"
	w.Options.Entity["Contact"].LoadOnly[0] = "name"
	w.Options.Entity["Contact"].Filter["email1"][1] = 'X'
	got, err := r.Get(ctx, "", stored.ID)
	require.NoError(t, err)
	got.Options.Entity["Contact"] = EntityOptions{}

	again, err := r.Get(ctx, "", stored.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"Contact.Create"}, again.Events)
	require.Equal(t, []string{"id"}, again.Options.Entity["Contact"].LoadOnly)
	require.JSONEq(t, `"a@example.com"`, string(again.Options.Entity["Contact"].Filter["email1"]))
}

func TestRegistryCreateKeepsAGivenIDForRestores(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	w := validWebhook()
	w.ID = "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b"
	w.Created = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	w.Modified = time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	got := mustCreate(t, r, w)
	require.Equal(t, w.ID, got.ID)
	require.Equal(t, w.Created, got.Created)
	require.Equal(t, w.Modified, got.Modified)

	_, err := r.Create(ctx, w.Space, w)
	requireFieldError(t, err, "id")

	w.ID = "42"
	_, err = r.Create(ctx, w.Space, w)
	requireFieldError(t, err, "id")
}

func TestRegistryCatalogueIsPipelinersByDefault(t *testing.T) {
	// events.txt is the module's copy of Pipeliner's catalogue.
	raw, err := os.ReadFile("events.txt")
	require.NoError(t, err)
	names := strings.Fields(string(raw))
	require.Len(t, names, 138)
	r := newTestRegistry()
	for _, name := range names {
		w := validWebhook()
		w.Events = []string{name}
		_, err := r.Create(context.Background(), w.Space, w)
		require.NoError(t, err, name)
	}
}

func TestRegistryConfigEventsExtendTheCatalogue(t *testing.T) {
	ctx := context.Background()
	w := validWebhook()
	w.Events = []string{"Invoice.Paid"}
	_, err := newTestRegistry().Create(ctx, "", w)
	requireFieldError(t, err, "events[0]")

	// Malformed names refuse the Registry, every one of them named.
	_, err = NewRegistry(ctx, RegistryConfig{Events: []string{"Invoice.Paid", "Invoice", "Invoice.Pa id"}})
	var fes FieldErrors
	require.ErrorAs(t, err, &fes)
	require.Equal(t, []string{"events[1]", "events[2]"}, []string{fes[0].Field, fes[1].Field})

	r := newRegistry(RegistryConfig{Events: []string{"Invoice.Create", "Invoice.Paid", "Account.Merged"}})
	for _, events := range [][]string{{"Invoice.Paid"}, {"Invoice.*"}, {"Account.Merged"}} {
		w.Events = events
		_, err := r.Create(ctx, "", w)
		require.NoError(t, err, "%v", events)
	}
}

func TestRegistryIsSafeForSimultaneousUse(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	m := NewMatcher(r)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range each {
				w := validWebhook()
				w.URL = fmt.Sprintf("https://example.com/%d/%d", g, i)
				got, err := r.Create(ctx, w.Space, w)
				if err != nil {
					t.Error(err)
					return
				}
				events := []string{"Account.*"}
				if _, err := r.Update(ctx, "", got.ID, Patch{Events: &events}); err != nil {
					t.Error(err)
				}
				if i%2 == 0 {
					if err := r.Delete(ctx, "", got.ID); err != nil {
						t.Error(err)
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range each {
				if _, err := m.Match(Event{Name: "Account.Create", Data: json.RawMessage(`{}`)}); err != nil {
					t.Error(err)
				}
				if _, err := r.List(ctx, ""); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	list, err := r.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, list, writers*each/2)
	hooks, err := m.Match(Event{Name: "Account.Create", Data: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.Len(t, hooks, writers*each/2)
}

func TestRegistryHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestRegistry().Create(ctx, "", validWebhook())
	require.ErrorIs(t, err, context.Canceled)
}

func TestRegistryRefusesInternalURLsWhenThePolicyIsOn(t *testing.T) {
	ctx := context.Background()
	tests := []struct{ url, reason string }{
		{"http://10.0.0.7/hook", "10.0.0.7 is private"},
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"},
		{"https://[::1]:8443/", "::1 is loopback"},
		{"http://[::ffff:192.168.1.1]/", "192.168.1.1"},
		{"http://localhost:8080/", "localhost"},
		{"http://api.LOCALHOST./", "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			r := newRegistry(RegistryConfig{}) // the policy is on by default
			_, err := r.Create(ctx, "", Webhook{URL: tt.url, Events: []string{"*"}})
			requireFieldError(t, err, "url")
			require.ErrorIs(t, err, ErrRefusedAddress)
			require.ErrorContains(t, err, tt.reason)
			require.Empty(t, mustList(t, r))

			open := newRegistry(RegistryConfig{Addresses: AddressPolicy{AllowPrivateNetworks: true}})
			mustCreate(t, open, Webhook{URL: tt.url, Events: []string{"*"}})
		})
	}
	t.Run("an Update to an internal URL keeps the registration as it was", func(t *testing.T) {
		r := newRegistry(RegistryConfig{})
		w := mustCreate(t, r, Webhook{URL: "https://hooks.example.com/", Events: []string{"*"}})
		w.URL = "http://127.0.0.1:9000/admin"
		_, err := r.Update(ctx, w.Space, w.ID, replace(w))
		require.ErrorIs(t, err, ErrRefusedAddress)
		got, err := r.Get(ctx, "", w.ID)
		require.NoError(t, err)
		require.Equal(t, "https://hooks.example.com/", got.URL)
	})
	t.Run("names are checked when dialling, not here", func(t *testing.T) {
		mustCreate(t, newRegistry(RegistryConfig{}), Webhook{URL: "https://hooks.example.com/", Events: []string{"*"}})
	})
}

func TestDisabledSurvivesJSONAndCreateButNotUpdate(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	w := Webhook{URL: "https://hooks.example.com/", Events: []string{"*"}, Disabled: &Disabled{At: at, Reason: "the receiver answered 410 Gone"}}
	b, err := json.Marshal(w)
	require.NoError(t, err)
	require.Contains(t, string(b), `"disabled":{"at":"2026-11-20T08:00:00","reason":"the receiver answered 410 Gone"}`)
	var back Webhook
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, w.Disabled, back.Disabled)

	r := newTestRegistry()
	restored := mustCreate(t, r, back)
	require.Equal(t, w.Disabled, restored.Disabled, "a host restores what it persisted")
	require.Empty(t, matchURLs(t, NewMatcher(r), Event{Name: "Task.Create", Data: account}), "a disabled registration matches nothing")
	listed := mustList(t, r)
	require.Len(t, listed, 1, "but is listed")
	require.NotNil(t, listed[0].Disabled)

	updated, err := r.Update(ctx, "", restored.ID, Patch{})
	require.NoError(t, err)
	require.Nil(t, updated.Disabled, "an Update enables it again")
	require.Equal(t, []string{w.URL}, matchURLs(t, NewMatcher(r), Event{Name: "Task.Create", Data: account}))
}

// oddOptions has what JSON escapes or spaces: a Registry keeps options as
// JSON, and must give all of it back.
func oddOptions() Options {
	return Options{
		Entity: map[string]EntityOptions{
			"Contact": {
				Expand:   []string{"owner"},
				LoadOnly: []string{"id", "name<&>", "line\u2028break"},
				Filter: map[string]json.RawMessage{
					"email1":        json.RawMessage(` [ "a<b>&c@example.com" , "\u00e9", "` + "\u2028" + `" ] `),
					`we"ird\key`:    json.RawMessage(" 5 "),
					"näme.first":    json.RawMessage(`"Zoë"`),
					"line\u2028sep": json.RawMessage(`null`),
				},
				FilterOp:      map[string]string{"email1": "ieq", "näme.first": "icontains"},
				OnFieldChange: []string{"email1"},
			},
			"CE_Ünïcode": {},
		},
		RelatedEntity:       &EntityOptions{},
		SkipKeys:            []string{"a\u2028b", "<sync>"},
		ChunkSize:           7,
		ChunkDelay:          defaultMaxChunkDelay, // the most Limits allow by default
		CustomEntityAPIName: []string{"CE_Ünïcode"},
	}
}

func TestRegistryGivesBackTheOptionsItWasGiven(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	w := validWebhook()
	w.Events = []string{"Contact.*", "CustomEntity.*"}
	w.Options = oddOptions()
	stored := mustCreate(t, r, w)
	require.Zero(t, r.byID[spaceID{"", stored.ID}].hook.Options, "the options are kept as JSON only")

	// Filter values come back as JSON writes them, compact and with <, >, &
	// and U+2028 escaped, so that a round trip through JSON leaves them as
	// they are (FuzzOptions checks it).
	want := oddOptions()
	for path, raw := range want.Entity["Contact"].Filter {
		b, err := json.Marshal(raw)
		require.NoError(t, err)
		want.Entity["Contact"].Filter[path] = b
	}
	require.Equal(t, `["a\u003cb\u003e\u0026c@example.com","\u00e9","\u2028"]`, string(want.Entity["Contact"].Filter["email1"]))
	for _, got := range []Webhook{stored, mustGet(t, r, "", stored.ID), mustList(t, r)[0]} {
		if d := cmp.Diff(want, got.Options); d != "" {
			t.Fatalf("options (-given +got):\n%s", d)
		}
	}
	hooks, err := NewMatcher(r).Match(Event{Name: "Contact.Create", Data: json.RawMessage(`{"email1":"A<B>&C@example.com","näme":{"first":"ZOË"},"we\"ird\\key":5.0}`)})
	require.NoError(t, err)
	require.Len(t, hooks, 1)
	if d := cmp.Diff(stored, *hooks[0]); d != "" {
		t.Fatalf("matched (-stored +matched):\n%s", d)
	}

	// What Update stores is what it returns, too.
	stored.Options.Entity["Contact"].Filter["email1"] = json.RawMessage(`"x"`)
	updated, err := r.Update(ctx, "", stored.ID, replace(stored))
	require.NoError(t, err)
	if d := cmp.Diff(updated, mustGet(t, r, "", stored.ID)); d != "" {
		t.Fatalf("Get after Update (-updated +got):\n%s", d)
	}
	require.Equal(t, `"x"`, string(updated.Options.Entity["Contact"].Filter["email1"]))
}

func mustGet(t *testing.T, r *Registry, space, id string) Webhook {
	t.Helper()
	w, err := r.Get(context.Background(), space, id)
	require.NoError(t, err)
	return w
}

func TestRegistryRefusesOptionsThatAreNotUTF8(t *testing.T) {
	const bad = "a\xffb"
	entity := func(eo EntityOptions) Options { return Options{Entity: map[string]EntityOptions{"Account": eo}} }
	tests := []struct {
		options Options
		field   string
	}{
		{Options{SkipKeys: []string{"sync", bad}}, "options.skip_keys[1]"},
		{Options{CustomEntityAPIName: []string{bad}}, "options.custom_entity_api_name[0]"},
		{Options{Entity: map[string]EntityOptions{bad: {}}}, "options.entity"},
		{entity(EntityOptions{Filter: map[string]json.RawMessage{bad: json.RawMessage(`1`)}}), "options.entity.Account.filter." + bad},
		{entity(EntityOptions{LoadOnly: []string{"id", bad}}), "options.entity.Account.load-only[1]"},
		{entity(EntityOptions{Expand: []string{bad}}), "options.entity.Account.expand[0]"},
		{entity(EntityOptions{OnFieldChange: []string{bad}}), "options.entity.Account.on-field-change[0]"},
		{Options{RelatedEntity: &EntityOptions{LoadOnly: []string{bad}}}, "options.related_entity.load-only[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			w := validWebhook()
			w.Options = tt.options
			_, err := newTestRegistry().Create(context.Background(), w.Space, w)
			requireFieldError(t, err, tt.field)
			require.ErrorContains(t, err, "not UTF-8")
		})
	}
	// Filter values are JSON as given, and JSON may carry any bytes in a string.
	w := validWebhook()
	w.Options = entity(EntityOptions{Filter: map[string]json.RawMessage{"name": json.RawMessage(`"` + bad + `"`)}})
	got := mustCreate(t, newTestRegistry(), w)
	require.Equal(t, `"`+bad+`"`, string(got.Options.Entity["Account"].Filter["name"]))
}

// The "webhook" object of request bodies is the registration marshalled
// as it was given, without its signature.
func TestPayloadIsTheRegistrationAsMarshalled(t *testing.T) {
	r := newTestRegistry()
	for _, opts := range []Options{{}, oddOptions(), {Entity: map[string]EntityOptions{"Account": {LoadOnly: []string{"id"}}}}} {
		w := Webhook{URL: "https://example.com/h?a=<b>&c", Events: []string{"Account.*", "Contact.Create", "CustomEntity.*"},
			Options: opts, InsecureSSL: true, Signature: testSignature}
		stored := mustCreate(t, r, w)
		w.ID, w.Created, w.Modified, w.Signature = stored.ID, stored.Created, stored.Modified, ""
		want, err := json.Marshal(w)
		require.NoError(t, err)
		require.Equal(t, string(want), r.byID[spaceID{"", stored.ID}].payloadJSON())
	}
}

// Disabling copies a registration, and the copy shares what the first
// built: neither the payload nor Match's copy may show it disabled.
func TestDisablingKeepsWhatMatchHandedOut(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	m := NewMatcher(r)
	created := mustCreate(t, r, Webhook{URL: "https://example.com/a", Events: []string{"Account.*"}, Signature: testSignature,
		Options: Options{Entity: map[string]EntityOptions{"Account": {Filter: map[string]json.RawMessage{"name": json.RawMessage(`"Acme"`)}}}}})
	ev := Event{Name: "Account.Update", Data: account}
	before, err := m.Match(ev)
	require.NoError(t, err)
	require.Len(t, before, 1)
	payload := r.byID[spaceID{"", created.ID}].payloadJSON()

	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	dis, err := r.disable(ctx, r.byID[spaceID{"", created.ID}].key, "gone", at)
	require.NoError(t, err)
	require.Equal(t, &Disabled{At: at, Reason: "gone"}, dis)
	require.Equal(t, &Disabled{At: at, Reason: "gone"}, mustGet(t, r, "", created.ID).Disabled)
	require.Empty(t, matchURLs(t, m, ev))
	require.Nil(t, before[0].Disabled, "what Match handed out does not change")
	require.Equal(t, payload, r.byID[spaceID{"", created.ID}].payloadJSON())
	require.NotContains(t, payload, "disabled")

	updated, err := r.Update(ctx, "", created.ID, Patch{})
	require.NoError(t, err)
	after, err := m.Match(ev)
	require.NoError(t, err)
	require.Len(t, after, 1)
	if d := cmp.Diff(updated, *after[0]); d != "" {
		t.Fatalf("matched after Update (-updated +matched):\n%s", d)
	}
	require.NotSame(t, before[0], after[0])
}
