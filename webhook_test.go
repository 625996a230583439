package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

func TestWebhookUnmarshalRejectsWrongJSONTypes(t *testing.T) {
	tests := []struct {
		name, json, field string
	}{
		{"a body that is a list", `[]`, "webhook"},
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
	r := newTestRegistry()
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
		stored, err := newTestRegistry().Create(context.Background(), "", w)
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

// docOptionsExample is the "Example of Option parameters" of
// webhooks-doc.txt, verbatim, comments and all.
const docOptionsExample = `{ "entity": { "Contact": { "expand": [ "primary_account", "primary_contact", "task_relations.task" ], "load-only": [ "id", "primary_account", "primary_contact.first_name", "task_relations.task" ], "filter": { "email1": ["test@example.com", "test@example.net"], "email2": "test@example.com" }, "filter-op": {"email1": "eq"}, # optional, default operator is eq "on-field-change": ["email1"] }, "Account": { "filter": { "owner_id": ["9900cce6-bcd6-412a-bcd1-1904556c949a"] } } }, "related_entity": {"expand": ["contact"], "load-only": ["id", "contact"]}, "skip_keys": ["gmail_sync", "custom_integration"], "chunk_size": 100, // defines the size of the chunk, default is 100, max is 100. "chunk_delay": 300 // each chunk will be delayed by N * chunk_delay seconds, where N is index of chunk, default is 0. }`

// stripDocComments removes the example's "# ..." and "// ..." comments,
// which run up to the next key or brace since the example is one line.
func stripDocComments(s string) string {
	return regexp.MustCompile(`(#|//)[^"{}]*`).ReplaceAllString(s, "")
}

func TestOptionsDocumentedExample(t *testing.T) {
	docJSON := stripDocComments(docOptionsExample)
	require.True(t, json.Valid([]byte(docJSON)), "without its comments the example is not JSON: %s", docJSON)
	var opts Options
	require.NoError(t, json.Unmarshal([]byte(docJSON), &opts))

	t.Run("it unmarshals into Options", func(t *testing.T) {
		want := Options{
			Entity: map[string]EntityOptions{
				"Contact": {
					Expand:   []string{"primary_account", "primary_contact", "task_relations.task"},
					LoadOnly: []string{"id", "primary_account", "primary_contact.first_name", "task_relations.task"},
					Filter: map[string]json.RawMessage{
						"email1": json.RawMessage(`["test@example.com","test@example.net"]`),
						"email2": json.RawMessage(`"test@example.com"`),
					},
					FilterOp:      map[string]string{"email1": "eq"},
					OnFieldChange: []string{"email1"},
				},
				"Account": {Filter: map[string]json.RawMessage{
					"owner_id": json.RawMessage(`["9900cce6-bcd6-412a-bcd1-1904556c949a"]`),
				}},
			},
			RelatedEntity: &EntityOptions{Expand: []string{"contact"}, LoadOnly: []string{"id", "contact"}},
			SkipKeys:      []string{"gmail_sync", "custom_integration"},
			ChunkSize:     100,
			ChunkDelay:    300,
		}
		if d := cmp.Diff(want, opts, projJSON); d != "" {
			t.Fatalf("Options (-want +got):\n%s", d)
		}
	})

	t.Run("a registration with it is accepted and marshals back to the same JSON", func(t *testing.T) {
		hook := mustCreate(t, newTestRegistry(), Webhook{URL: "https://example.com/hooks",
			Events: []string{"Contact.*", "Account.*"}, Options: opts})
		got, err := json.Marshal(hook.Options)
		require.NoError(t, err)
		require.JSONEq(t, docJSON, string(got))
		whole, err := json.Marshal(hook)
		require.NoError(t, err)
		require.JSONEq(t, docJSON, gjson.GetBytes(whole, "options").Raw)
	})

	t.Run("a Contact update that passes its filter arrives expanded and cut down", func(t *testing.T) {
		var before map[string]any
		require.NoError(t, json.Unmarshal(projContact(t), &before))
		before["email1"], before["email2"] = "old@example.com", "test@example.com"
		after := map[string]any{}
		for k, v := range before {
			after[k] = v
		}
		after["email1"] = "test@example.net"
		prev, err := json.Marshal(before)
		require.NoError(t, err)
		data, err := json.Marshal(after)
		require.NoError(t, err)

		// The host's Expander loads what the fixture lacks: the first
		// task relation's task is already there, the third's is not.
		exp := &projExpander{answer: func(req ExpandRequest) (json.RawMessage, error) {
			switch req.Entity {
			case "Contact":
				var rec map[string]any
				if err := json.Unmarshal(req.Record, &rec); err != nil {
					return nil, err
				}
				rels, _ := rec["task_relations"].([]any)
				if len(rels) != 3 {
					return nil, errors.New("the fixture has changed")
				}
				if rel, ok := rels[2].(map[string]any); ok {
					rel["task"] = map[string]any{"id": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", "subject": "Visit"}
				}
				return json.Marshal(rec)
			case "CloudObject":
				return json.RawMessage(`{"id":"d1","name":"offer.pdf","contact":{"id":"c1"}}`), nil
			}
			return nil, errors.New("unexpected entity " + req.Entity)
		}}
		items := projSend(t, opts, Config{Expander: exp},
			Event{ID: "ev-1", Name: "Contact.Update", Data: data, Previous: prev},
			Event{ID: "ev-2", Name: "Contact.DocumentLinked", Data: data,
				Related: json.RawMessage(`{"id":"d1","name":"offer.pdf"}`), RelatedEntity: "CloudObject"})

		var wantEntity map[string]any
		require.NoError(t, json.Unmarshal([]byte(projContactCut), &wantEntity))
		wantEntity["task_relations"] = append(wantEntity["task_relations"].([]any),
			map[string]any{"task": map[string]any{"id": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", "subject": "Visit"}})
		for i, it := range items {
			var got map[string]any
			require.NoError(t, json.Unmarshal(it.Entity, &got))
			if d := cmp.Diff(wantEntity, got); d != "" {
				t.Fatalf("item %d entity (-want +got):\n%s", i, d)
			}
		}
		require.JSONEq(t, `null`, string(items[0].RelatedEntity))
		require.JSONEq(t, `{"id":"d1","contact":{"id":"c1"}}`, string(items[1].RelatedEntity))

		var paths [][]string
		for _, req := range exp.requests() {
			paths = append(paths, req.Paths)
		}
		want := [][]string{
			{"primary_account", "primary_contact", "task_relations.task"},
			{"primary_account", "primary_contact", "task_relations.task"},
			{"contact"},
		}
		if d := cmp.Diff(want, paths); d != "" {
			t.Fatalf("expand paths (-want +got):\n%s", d)
		}
	})
}
