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
			r := NewRegistry()
			kept := mustCreate(t, r, validWebhook())
			w := validWebhook()
			tt.change(&w)
			_, err := r.Create(ctx, w)
			requireFieldError(t, err, tt.field)

			// Update validates the same way, and a refusal keeps what was stored.
			w.ID = kept.ID
			_, err = r.Update(ctx, w)
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
	r := NewRegistry()
	for _, size := range []int{0, 1, 100} {
		w := validWebhook()
		w.Options.ChunkSize = size
		got := mustCreate(t, r, w)
		require.Equal(t, size, got.Options.ChunkSize, "the stored option is what was given; 0 means the default")
	}
}

func TestWebhookUnmarshalRejectsWrongJSONTypes(t *testing.T) {
	tests := []struct {
		name, json, field string
	}{
		{"a url that is a number", `{"url": 5, "events": ["*"]}`, "url"},
		{"events that is a string", `{"url": "https://x.example", "events": "Account.Create"}`, "events"},
		{"insecure_ssl that is a string", `{"url": "https://x.example", "events": ["*"], "insecure_ssl": "yes"}`, "insecure_ssl"},
		{"options that is a list", `{"options": []}`, "options"},
		{"chunk_size that is a string", `{"options": {"chunk_size": "100"}}`, "options.chunk_size"},
		{"chunk_size that is a fraction", `{"options": {"chunk_size": 10.5}}`, "options.chunk_size"},
		{"chunk_delay that is a boolean", `{"options": {"chunk_delay": true}}`, "options.chunk_delay"},
		{"skip_keys that is a string", `{"options": {"skip_keys": "gmail_sync"}}`, "options.skip_keys"},
		{"skip_keys with a number", `{"options": {"skip_keys": ["a", 1]}}`, "options.skip_keys"},
		{"custom_entity_api_name that is an object", `{"options": {"custom_entity_api_name": {}}}`, "options.custom_entity_api_name"},
		{"entity that is a list", `{"options": {"entity": []}}`, "options.entity"},
		{"an entity's options that are a string", `{"options": {"entity": {"Contact": "id"}}}`, "options.entity.Contact"},
		{"load-only that is a string", `{"options": {"entity": {"Contact": {"load-only": "id,name"}}}}`, "options.entity.Contact.load-only"},
		{"load_only that is a string", `{"options": {"entity": {"Contact": {"load_only": "id"}}}}`, "options.entity.Contact.load_only"},
		{"both load-only and load_only", `{"options": {"entity": {"Contact": {"load-only": ["id"], "load_only": ["name"]}}}}`, "options.entity.Contact"},
		{"filter that is a list", `{"options": {"entity": {"Contact": {"filter": ["a"]}}}}`, "options.entity.Contact.filter"},
		{"a filter-op that is not a string", `{"options": {"entity": {"Contact": {"filter": {"a": 1}, "filter-op": {"a": 1}}}}}`, "options.entity.Contact.filter-op.a"},
		{"on-field-change that is a string", `{"options": {"entity": {"Contact": {"on-field-change": "email1"}}}}`, "options.entity.Contact.on-field-change"},
		{"related_entity that is a list", `{"options": {"related_entity": ["contact"]}}`, "options.related_entity"},
		{"an unknown option, misspelt", `{"options": {"chunkSize": 10}}`, "options.chunkSize"},
		{"an unknown entity option", `{"options": {"entity": {"Contact": {"filters": {"a": 1}}}}}`, "options.entity.Contact.filters"},
		{"a created time in another format", `{"created": "26/11/2026"}`, "created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Webhook
			requireFieldError(t, json.Unmarshal([]byte(tt.json), &w), tt.field)
		})
	}
}

// pipelinerWebhook is a registration as Pipeliner's API writes it, with the
// options of its documentation.
const pipelinerWebhook = `{
  "id": "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b",
  "url": "https://example.com/hooks",
  "events": ["Contact.Create", "Contact.Update", "Account.*"],
  "options": {
    "entity": {
      "Contact": {
        "expand": ["primary_account", "primary_contact", "task_relations.task"],
        "load-only": ["id", "primary_account", "primary_contact.first_name", "task_relations.task"],
        "filter": {"email1": ["test@example.com", "test@example.net"], "email2": "test@example.com"},
        "filter-op": {"email1": "eq"},
        "on-field-change": ["email1"]
      },
      "Account": {"filter": {"owner_id": ["9900cce6-bcd6-412a-bcd1-1904556c949a"]}}
    },
    "related_entity": {"expand": ["contact"], "load-only": ["id", "contact"]},
    "skip_keys": ["gmail_sync", "custom_integration"],
    "chunk_size": 100,
    "chunk_delay": 300,
    "custom_entity_api_name": ["CE_Name1", "CE_Name2"]
  },
  "insecure_ssl": false,
  "signature": "01234567-abcd-dcba-ffff-000000000000",
  "created": "2019-01-01T00:00:00",
  "modified": "2019-01-02T03:04:05"
}`

func TestWebhookJSONRoundTripsPipelinerShape(t *testing.T) {
	var w Webhook
	require.NoError(t, json.Unmarshal([]byte(pipelinerWebhook), &w))
	require.Equal(t, time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC), w.Modified)
	require.Equal(t, []string{"id", "primary_account", "primary_contact.first_name", "task_relations.task"},
		w.Options.Entity["Contact"].LoadOnly)

	// A stored copy keeps everything, the given id and times included.
	r := NewRegistry()
	stored := mustCreate(t, r, w)
	out, err := json.Marshal(stored)
	require.NoError(t, err)
	require.JSONEq(t, pipelinerWebhook, string(out))

	// The pointer marshals the same way, as encoding/json users expect.
	out2, err := json.Marshal(&stored)
	require.NoError(t, err)
	require.Equal(t, string(out), string(out2))
}

func TestWebhookJSONAcceptsLoadOnlyWithUnderscore(t *testing.T) {
	var a, b Options
	require.NoError(t, json.Unmarshal([]byte(`{"entity":{"Contact":{"load_only":["id","owner.name"]}}}`), &a))
	require.NoError(t, json.Unmarshal([]byte(`{"entity":{"Contact":{"load-only":["id","owner.name"]}}}`), &b))
	if d := cmp.Diff(b, a); d != "" {
		t.Fatalf("load_only (-load-only +load_only):\n%s", d)
	}
	out, err := json.Marshal(a)
	require.NoError(t, err)
	require.JSONEq(t, `{"entity":{"Contact":{"load-only":["id","owner.name"]}}}`, string(out))
}

func TestWebhookJSONOfEmptyOptions(t *testing.T) {
	w := Webhook{ID: "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b", URL: "https://example.com/h", Events: []string{"*"},
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Modified: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	out, err := json.Marshal(w)
	require.NoError(t, err)
	require.Equal(t, `{"id":"0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b","url":"https://example.com/h","events":["*"],`+
		`"options":{},"insecure_ssl":false,"created":"2026-01-02T03:04:05","modified":"2026-01-02T03:04:05"}`, string(out))

	var back Webhook
	require.NoError(t, json.Unmarshal(out, &back))
	if d := cmp.Diff(w, back); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	// Pipeliner's fields this package does not model, and a null options, are accepted.
	require.NoError(t, json.Unmarshal([]byte(`{"url":"https://x.example","events":["*"],"options":null,"is_deleted":false,"client_id":"x"}`), &back))
	require.Equal(t, Options{}, back.Options)
}

func TestRegistryLifecycle(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 10, 0, 0, 700_000_000, time.UTC)
	r := NewRegistry()
	r.Now = func() time.Time { return now }

	created, err := r.Create(ctx, Webhook{Space: "team-1", URL: "https://example.com/a", Events: []string{"Account.Create"}})
	require.NoError(t, err)
	require.True(t, isUUID(created.ID), "id %q", created.ID)
	// Pipeliner's times have whole seconds; stored ones match what JSON gives back.
	require.Equal(t, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), created.Created)
	require.Equal(t, created.Created, created.Modified)
	require.Equal(t, "team-1", created.Space)

	got, err := r.Get(ctx, created.ID)
	require.NoError(t, err)
	if d := cmp.Diff(created, got); d != "" {
		t.Fatalf("Get (-created +got):\n%s", d)
	}

	now = now.Add(time.Hour)
	upd := got
	upd.URL = "https://example.com/b"
	upd.Space = "" // keeps the space
	upd.Created = time.Time{}
	updated, err := r.Update(ctx, upd)
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

	require.NoError(t, r.Delete(ctx, created.ID))
	_, err = r.Get(ctx, created.ID)
	require.ErrorIs(t, err, ErrNotFound)
	list, err = r.List(ctx, "team-1")
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func TestRegistryUnknownIDIsNotFound(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	const id = "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b"
	_, err := r.Get(ctx, id)
	require.ErrorIs(t, err, ErrNotFound)
	w := validWebhook()
	w.ID = id
	_, err = r.Update(ctx, w)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, r.Delete(ctx, id), ErrNotFound)
	require.False(t, errors.Is(err, ErrInvalid))
}

func TestRegistryUpdateNeverMovesSpace(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	w := validWebhook()
	w.Space = "team-1"
	stored := mustCreate(t, r, w)

	moved := stored
	moved.Space = "team-2"
	moved.URL = "https://evil.example/"
	_, err := r.Update(ctx, moved)
	requireFieldError(t, err, "space")

	got, err := r.Get(ctx, stored.ID)
	require.NoError(t, err)
	require.Equal(t, stored, got, "a refused update changes nothing")

	same := stored
	same.URL = "https://example.com/new"
	_, err = r.Update(ctx, same)
	require.NoError(t, err)
}

func TestRegistryKeepsItsOwnCopies(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	w := validWebhook()
	w.Events = []string{"Contact.Create"}
	w.Options.Entity = map[string]EntityOptions{"Contact": {LoadOnly: []string{"id"},
		Filter: map[string]json.RawMessage{"email1": json.RawMessage(`"a@example.com"`)}}}
	stored := mustCreate(t, r, w)

	// The caller's values, and what Get returned, are the caller's to change.
	w.Events[0] = "Contact.Delete"
	w.Options.Entity["Contact"].LoadOnly[0] = "name"
	w.Options.Entity["Contact"].Filter["email1"][1] = 'X'
	got, err := r.Get(ctx, stored.ID)
	require.NoError(t, err)
	got.Options.Entity["Contact"] = EntityOptions{}

	again, err := r.Get(ctx, stored.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"Contact.Create"}, again.Events)
	require.Equal(t, []string{"id"}, again.Options.Entity["Contact"].LoadOnly)
	require.JSONEq(t, `"a@example.com"`, string(again.Options.Entity["Contact"].Filter["email1"]))
}

func TestRegistryCreateKeepsAGivenIDForRestores(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	w := validWebhook()
	w.ID = "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b"
	w.Created = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	w.Modified = time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	got := mustCreate(t, r, w)
	require.Equal(t, w.ID, got.ID)
	require.Equal(t, w.Created, got.Created)
	require.Equal(t, w.Modified, got.Modified)

	_, err := r.Create(ctx, w)
	requireFieldError(t, err, "id")

	w.ID = "42"
	_, err = r.Create(ctx, w)
	requireFieldError(t, err, "id")
}

func TestRegistryCatalogueIsPipelinersByDefault(t *testing.T) {
	// events.txt is the module's copy of Pipeliner's catalogue.
	raw, err := os.ReadFile("events.txt")
	require.NoError(t, err)
	names := strings.Fields(string(raw))
	require.Len(t, names, 138)
	r := NewRegistry()
	for _, name := range names {
		w := validWebhook()
		w.Events = []string{name}
		_, err := r.Create(context.Background(), w)
		require.NoError(t, err, name)
	}
}

func TestRegistryAddEventsExtendsTheCatalogue(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	w := validWebhook()
	w.Events = []string{"Invoice.Paid"}
	_, err := r.Create(ctx, w)
	requireFieldError(t, err, "events[0]")

	// A malformed name refuses the whole call.
	requireFieldError(t, r.AddEvents("Invoice.Paid", "Invoice"), "events[1]")
	_, err = r.Create(ctx, w)
	requireFieldError(t, err, "events[0]")

	require.NoError(t, r.AddEvents("Invoice.Create", "Invoice.Paid", "Account.Merged"))
	for _, events := range [][]string{{"Invoice.Paid"}, {"Invoice.*"}, {"Account.Merged"}} {
		w.Events = events
		_, err := r.Create(ctx, w)
		require.NoError(t, err, "%v", events)
	}
	// Another registry keeps Pipeliner's catalogue.
	w.Events = []string{"Invoice.Paid"}
	_, err = NewRegistry().Create(ctx, w)
	requireFieldError(t, err, "events[0]")
}

func TestRegistryIsSafeForSimultaneousUse(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
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
				got, err := r.Create(ctx, w)
				if err != nil {
					t.Error(err)
					return
				}
				got.Events = []string{"Account.*"}
				if _, err := r.Update(ctx, got); err != nil {
					t.Error(err)
				}
				if i%2 == 0 {
					if err := r.Delete(ctx, got.ID); err != nil {
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
	_, err := NewRegistry().Create(ctx, validWebhook())
	require.ErrorIs(t, err, context.Canceled)
}

// FuzzOptions feeds arbitrary options objects through the JSON decoder and
// the registry: nothing panics, every refusal is a *FieldError, and what
// is accepted round-trips through JSON unchanged.
func FuzzOptions(f *testing.F) {
	var seed struct {
		Options json.RawMessage `json:"options"`
	}
	if err := json.Unmarshal([]byte(pipelinerWebhook), &seed); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(seed.Options), `{}`, `null`, `[]`, `{"chunk_size": 101}`, `{"chunk_size": "1"}`, `{"chunk_delay": -1}`,
		`{"entity": {"Contact": {"load_only": ["id"], "filter": {"a": [1, "2", null]}, "filter-op": {"a": "between"}}}}`,
		`{"entity": {"X": {"filter": {"a..b": 1}}}}`, `{"related_entity": {"filter": {"a": 1}}}`,
		`{"skip_keys": [""], "custom_entity_api_name": ["CE"]}`, `{"entity": {"X": {"filter": {"a": {"b": 1}}}}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, options string) {
		if !json.Valid([]byte(options)) {
			return
		}
		body := `{"url": "https://example.com/h", "events": ["*"], "options": ` + options + `}`
		var w Webhook
		if err := json.Unmarshal([]byte(body), &w); err != nil {
			requireFieldErrorAny(t, err)
			return
		}
		stored, err := NewRegistry().Create(context.Background(), w)
		if err != nil {
			requireFieldErrorAny(t, err)
			return
		}
		out, err := json.Marshal(stored)
		require.NoError(t, err)
		var back Webhook
		require.NoError(t, json.Unmarshal(out, &back), "%s", out)
		if d := cmp.Diff(stored, back); d != "" {
			t.Fatalf("round trip of %s (-stored +back):\n%s", out, d)
		}
	})
}

func requireFieldErrorAny(t *testing.T, err error) {
	t.Helper()
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	require.ErrorIs(t, err, ErrInvalid)
	require.NotEmpty(t, fe.Field)
}
