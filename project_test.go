package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// projContact is testdata/contact.json, a Pipeliner Contact with nested
// objects and an array of objects (task_relations).
func projContact(t testing.TB) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile("testdata/contact.json")
	require.NoError(t, err)
	require.True(t, json.Valid(b), "testdata/contact.json is not JSON")
	return b
}

// projSend registers a webhook with opts on Contact.* and CustomEntity.*
// in the space of the first event, dispatches events through a Dispatcher
// configured by cfg, and returns the items of the one request a real
// receiver got.
func projSend(t *testing.T, opts Options, cfg Config, events ...Event) []item {
	t.Helper()
	rcv := newReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{Space: events[0].Space, URL: rcv.URL, Events: []string{"Contact.*", "CustomEntity.*"},
		Options: opts})
	d := newTestDispatcher(t, r, cfg)
	dispatch(t, d, events...)
	items := decodeItems(t, rcv.next(t).Body)
	require.Len(t, items, len(events))
	require.Empty(t, rcv.drain(), "more than one request")
	return items
}

func projContactOptions(o EntityOptions) Options {
	return Options{Entity: map[string]EntityOptions{"Contact": o}}
}

func TestProjectLoadOnly(t *testing.T) {
	tests := []struct {
		name     string
		record   string
		loadOnly []string
		want     string
	}{
		{
			name:     "top-level fields are kept and the others dropped",
			record:   `{"id":"c1","first_name":"Jana","last_name":"Nováková","email1":"jana@example.com","gender":2}`,
			loadOnly: []string{"id", "email1"},
			want:     `{"id":"c1","email1":"jana@example.com"}`,
		},
		{
			name:     "a path to an object keeps the object whole",
			record:   `{"id":"c1","primary_account":{"id":"a1","name":"Acme","address":{"city":"Brno"}},"email1":"x"}`,
			loadOnly: []string{"primary_account"},
			want:     `{"primary_account":{"id":"a1","name":"Acme","address":{"city":"Brno"}}}`,
		},
		{
			name:     "a nested path keeps only that field of the object",
			record:   `{"id":"c1","primary_contact":{"id":"c2","first_name":"Tomáš","last_name":"Dvořák"}}`,
			loadOnly: []string{"primary_contact.first_name"},
			want:     `{"primary_contact":{"first_name":"Tomáš"}}`,
		},
		{
			name:     "a nested path reaches several levels down",
			record:   `{"owner":{"id":"u1","unit":{"id":"u9","name":"Sales","manager":{"name":"Eva"}}}}`,
			loadOnly: []string{"owner.unit.name"},
			want:     `{"owner":{"unit":{"name":"Sales"}}}`,
		},
		{
			name:     "paths that share a prefix merge into one object",
			record:   `{"id":"c1","primary_contact":{"id":"c2","first_name":"Tomáš","last_name":"Dvořák","email1":"t@example.com"}}`,
			loadOnly: []string{"primary_contact.first_name", "id", "primary_contact.email1"},
			want:     `{"id":"c1","primary_contact":{"first_name":"Tomáš","email1":"t@example.com"}}`,
		},
		{
			name:     "a path the record lacks is left out, not sent as null",
			record:   `{"id":"c1","first_name":"Jana"}`,
			loadOnly: []string{"id", "primary_account", "email2"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "a nested path the object lacks leaves the object out",
			record:   `{"id":"c1","primary_contact":{"id":"c2","last_name":"Dvořák"}}`,
			loadOnly: []string{"id", "primary_contact.first_name"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "a nested path through null or a scalar is left out",
			record:   `{"id":"c1","primary_contact":null,"owner":"u1"}`,
			loadOnly: []string{"id", "primary_contact.first_name", "owner.name"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "a field that is null in the record is kept as null",
			record:   `{"id":"c1","middle_name":null}`,
			loadOnly: []string{"id", "middle_name"},
			want:     `{"id":"c1","middle_name":null}`,
		},
		{
			name:     "no path left at all sends an empty object",
			record:   `{"id":"c1","first_name":"Jana"}`,
			loadOnly: []string{"email1", "primary_contact.first_name"},
			want:     `{}`,
		},
		{
			name: "a path through an array applies to every element",
			record: `{"id":"c1","task_relations":[` +
				`{"id":"r1","task_id":"t1","task":{"id":"t1","subject":"Call"}},` +
				`{"id":"r2","task_id":"t2","task":{"id":"t2","subject":"Mail"}}]}`,
			loadOnly: []string{"task_relations.task"},
			want:     `{"task_relations":[{"task":{"id":"t1","subject":"Call"}},{"task":{"id":"t2","subject":"Mail"}}]}`,
		},
		{
			name: "a path through an array goes on into the elements' objects",
			record: `{"task_relations":[` +
				`{"id":"r1","task":{"id":"t1","subject":"Call","status":"open"}},` +
				`{"id":"r2","task":{"id":"t2","subject":"Mail","status":"done"}}]}`,
			loadOnly: []string{"task_relations.task.subject", "task_relations.id"},
			want:     `{"task_relations":[{"id":"r1","task":{"subject":"Call"}},{"id":"r2","task":{"subject":"Mail"}}]}`,
		},
		{
			name: "array elements that lack the path or are not objects are left out",
			record: `{"id":"c1","task_relations":[` +
				`{"id":"r1","task":{"id":"t1"}},{"id":"r2"},"r3",null,7,[{"task":{"id":"t9"}}],` +
				`{"id":"r4","task":{"id":"t4"}}]}`,
			loadOnly: []string{"id", "task_relations.task"},
			want:     `{"id":"c1","task_relations":[{"task":{"id":"t1"}},{"task":{"id":"t4"}}]}`,
		},
		{
			name:     "an array whose elements all lack the path is left out",
			record:   `{"id":"c1","task_relations":[{"id":"r1"},{"id":"r2","task_id":"t2"}]}`,
			loadOnly: []string{"id", "task_relations.task"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "an array of scalars under a deeper path is left out",
			record:   `{"id":"c1","tags":["steel","tender"]}`,
			loadOnly: []string{"id", "tags.name"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "an empty array under a whole-field path stays an empty array",
			record:   `{"id":"c1","task_relations":[]}`,
			loadOnly: []string{"id", "task_relations"},
			want:     `{"id":"c1","task_relations":[]}`,
		},
		{
			name:     "an empty array under a deeper path is left out",
			record:   `{"id":"c1","task_relations":[]}`,
			loadOnly: []string{"id", "task_relations.task"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "an array under a whole-field path is kept as it is",
			record:   `{"tags":["steel",1,null,{"a":[]}],"id":"c1"}`,
			loadOnly: []string{"tags"},
			want:     `{"tags":["steel",1,null,{"a":[]}]}`,
		},
		{
			name:     "a whole path then a deeper path on the same field keep it whole",
			record:   `{"id":"c1","primary_contact":{"id":"c2","first_name":"Tomáš","last_name":"Dvořák"}}`,
			loadOnly: []string{"primary_contact", "primary_contact.first_name"},
			want:     `{"primary_contact":{"id":"c2","first_name":"Tomáš","last_name":"Dvořák"}}`,
		},
		{
			name:     "a deeper path then a whole path on the same field keep it whole",
			record:   `{"id":"c1","primary_contact":{"id":"c2","first_name":"Tomáš","last_name":"Dvořák"}}`,
			loadOnly: []string{"primary_contact.first_name", "primary_contact"},
			want:     `{"primary_contact":{"id":"c2","first_name":"Tomáš","last_name":"Dvořák"}}`,
		},
		{
			name:     "the same path given twice is kept once",
			record:   `{"id":"c1","email1":"x"}`,
			loadOnly: []string{"id", "id"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "keys are matched exactly, case and all",
			record:   `{"ID":"upper","id":"c1","Email1":"x"}`,
			loadOnly: []string{"id", "email1"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "keys written with escapes match their text",
			record:   `{"\u0069d":"c1","first_name":"Jana"}`,
			loadOnly: []string{"id"},
			want:     `{"id":"c1"}`,
		},
		{
			name:     "strings, numbers and spacing of kept values survive",
			record:   "{ \"note\" : \"a \\\"quoted\\\" \\u00e9 \\n line\" ,\n\t\"amount\": 1.50e3, \"ok\": true, \"x\": 1 }",
			loadOnly: []string{"note", "amount", "ok"},
			want:     `{"note":"a \"quoted\" é \n line","amount":1500,"ok":true}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := projSend(t, projContactOptions(EntityOptions{LoadOnly: tt.loadOnly}), Config{},
				Event{Name: "Contact.Update", Data: json.RawMessage(tt.record)})
			require.JSONEq(t, tt.want, string(items[0].Entity))
		})
	}
}

// projContactCut is testdata/contact.json cut down by the documented
// load-only: id, primary_account, primary_contact.first_name and
// task_relations.task.
const projContactCut = `{
  "id": "6b1e6f3a-4c2d-4e8f-9a10-2b3c4d5e6f70",
  "primary_account": {
    "id": "1f0c2d3e-5a6b-4c7d-8e9f-a0b1c2d3e4f5",
    "name": "Moravia Steel a.s.",
    "email1": "info@moravia-steel.example",
    "phone1": "+420 542 000 111",
    "city": "Brno",
    "owner_id": "9900cce6-bcd6-412a-bcd1-1904556c949a"
  },
  "primary_contact": {"first_name": "Tomáš"},
  "task_relations": [
    {"task": {"id": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b", "subject": "Send the Q1 price list",
      "due_date": "2026-12-01", "status": "open", "priority": 2}},
    {"task": {"id": "6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c", "subject": "Call about the framework contract",
      "due_date": "2026-12-03", "status": "completed", "priority": 1}}
  ]
}`

func TestProjectLoadOnlyFromJSONOptions(t *testing.T) {
	tests := []struct {
		name    string
		options string
	}{
		{
			name:    "load-only spelled with a dash cuts the record",
			options: `{"entity":{"Contact":{"load-only":["id","primary_account","primary_contact.first_name","task_relations.task"]}}}`,
		},
		{
			name:    "load_only spelled with an underscore cuts it the same",
			options: `{"entity":{"Contact":{"load_only":["id","primary_account","primary_contact.first_name","task_relations.task"]}}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts Options
			require.NoError(t, json.Unmarshal([]byte(tt.options), &opts))
			want := []string{"id", "primary_account", "primary_contact.first_name", "task_relations.task"}
			if d := cmp.Diff(want, opts.Entity["Contact"].LoadOnly); d != "" {
				t.Fatalf("LoadOnly (-want +got):\n%s", d)
			}
			items := projSend(t, opts, Config{}, Event{Name: "Contact.Update", Data: projContact(t)})
			require.JSONEq(t, projContactCut, string(items[0].Entity))
		})
	}
}

// projExpander is a test Expander: it records every request and answers
// with answer's result. It is safe for simultaneous use.
type projExpander struct {
	answer func(ExpandRequest) (json.RawMessage, error)

	mu   sync.Mutex
	reqs []ExpandRequest
}

func (e *projExpander) Expand(ctx context.Context, req ExpandRequest) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.reqs = append(e.reqs, ExpandRequest{Space: req.Space, Entity: req.Entity,
		Record: slices.Clone(req.Record), Paths: slices.Clone(req.Paths)})
	e.mu.Unlock()
	return e.answer(req)
}

func (e *projExpander) requests() []ExpandRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.reqs)
}

// projAddFields answers with the record plus the fields of add[entity],
// as a host that loaded the related records would.
func projAddFields(add map[string]string) func(ExpandRequest) (json.RawMessage, error) {
	return func(req ExpandRequest) (json.RawMessage, error) {
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(req.Record, &rec); err != nil {
			return nil, err
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(add[req.Entity]), &fields); err != nil {
			return nil, err
		}
		for k, v := range fields {
			rec[k] = v
		}
		return json.Marshal(rec)
	}
}

// projJSON compares JSON semantically in cmp.Diff: key order and spacing
// do not count.
var projJSON = cmp.Transformer("json", func(m json.RawMessage) any {
	var v any
	if err := json.Unmarshal(m, &v); err != nil {
		return string(m)
	}
	return v
})

func TestProjectExpand(t *testing.T) {
	const (
		contact   = `{"id":"c1","first_name":"Jana","primary_account_id":"a1"}`
		document  = `{"id":"d1","name":"offer.pdf","contact_id":"c1"}`
		invoice   = `{"id":"i1","customer_id":"a1","total":1200}`
		expanded  = `{"primary_account":{"id":"a1","name":"Acme"},"task_relations":[{"id":"r1","task":{"id":"t1"}}]}`
		docExpand = `{"contact":{"id":"c1","first_name":"Jana"}}`
	)
	add := map[string]string{
		"Contact":     expanded,
		"CloudObject": docExpand,
		"CE_Invoice":  `{"customer":{"id":"a1","name":"Acme"}}`,
	}
	tests := []struct {
		name        string
		opts        Options
		noExpander  bool
		event       Event
		wantReqs    []ExpandRequest
		wantEntity  string
		wantRelated string
	}{
		{
			name:  "the Expander gets the space, the entity, the record and the paths",
			opts:  projContactOptions(EntityOptions{Expand: []string{"primary_account", "task_relations.task"}}),
			event: Event{Space: "space-7", Name: "Contact.Update", Data: json.RawMessage(contact)},
			wantReqs: []ExpandRequest{{Space: "space-7", Entity: "Contact", Record: json.RawMessage(contact),
				Paths: []string{"primary_account", "task_relations.task"}}},
			wantEntity: `{"id":"c1","first_name":"Jana","primary_account_id":"a1",` +
				`"primary_account":{"id":"a1","name":"Acme"},"task_relations":[{"id":"r1","task":{"id":"t1"}}]}`,
			wantRelated: `null`,
		},
		{
			name: "a custom entity record is expanded and cut under its API name",
			opts: Options{Entity: map[string]EntityOptions{
				"CE_Invoice":   {Expand: []string{"customer"}, LoadOnly: []string{"id", "customer.name"}},
				"CustomEntity": {LoadOnly: []string{"total"}},
			}},
			event: Event{Space: "space-7", Name: "CustomEntity.Create", CustomEntity: "CE_Invoice",
				Data: json.RawMessage(invoice)},
			wantReqs: []ExpandRequest{{Space: "space-7", Entity: "CE_Invoice", Record: json.RawMessage(invoice),
				Paths: []string{"customer"}}},
			wantEntity:  `{"id":"i1","customer":{"name":"Acme"}}`,
			wantRelated: `null`,
		},
		{
			name: "the related record is expanded under Event.RelatedEntity",
			opts: Options{RelatedEntity: &EntityOptions{Expand: []string{"contact"}}},
			event: Event{Space: "space-7", Name: "Contact.DocumentLinked", Data: json.RawMessage(contact),
				Related: json.RawMessage(document), RelatedEntity: "CloudObject"},
			wantReqs: []ExpandRequest{{Space: "space-7", Entity: "CloudObject", Record: json.RawMessage(document),
				Paths: []string{"contact"}}},
			wantEntity:  contact,
			wantRelated: `{"id":"d1","name":"offer.pdf","contact_id":"c1","contact":{"id":"c1","first_name":"Jana"}}`,
		},
		{
			name: "the record and the related record are expanded each with its own options",
			opts: Options{
				Entity:        map[string]EntityOptions{"Contact": {Expand: []string{"primary_account"}}},
				RelatedEntity: &EntityOptions{Expand: []string{"contact"}},
			},
			event: Event{Name: "Contact.DocumentLinked", Data: json.RawMessage(contact),
				Related: json.RawMessage(document), RelatedEntity: "CloudObject"},
			wantReqs: []ExpandRequest{
				{Entity: "Contact", Record: json.RawMessage(contact), Paths: []string{"primary_account"}},
				{Entity: "CloudObject", Record: json.RawMessage(document), Paths: []string{"contact"}},
			},
			wantEntity: `{"id":"c1","first_name":"Jana","primary_account_id":"a1",` +
				`"primary_account":{"id":"a1","name":"Acme"},"task_relations":[{"id":"r1","task":{"id":"t1"}}]}`,
			wantRelated: `{"id":"d1","name":"offer.pdf","contact_id":"c1","contact":{"id":"c1","first_name":"Jana"}}`,
		},
		{
			name: "expand comes before load-only, which can keep the expanded fields",
			opts: projContactOptions(EntityOptions{
				Expand:   []string{"primary_account", "task_relations.task"},
				LoadOnly: []string{"id", "primary_account.name", "task_relations.task"},
			}),
			event: Event{Name: "Contact.Update", Data: json.RawMessage(contact)},
			wantReqs: []ExpandRequest{{Entity: "Contact", Record: json.RawMessage(contact),
				Paths: []string{"primary_account", "task_relations.task"}}},
			wantEntity:  `{"id":"c1","primary_account":{"name":"Acme"},"task_relations":[{"task":{"id":"t1"}}]}`,
			wantRelated: `null`,
		},
		{
			name: "the Expander gets the record as the host gave it, before load-only",
			opts: projContactOptions(EntityOptions{
				Expand:   []string{"primary_account"},
				LoadOnly: []string{"primary_account"},
			}),
			event: Event{Name: "Contact.Update", Data: json.RawMessage(contact)},
			wantReqs: []ExpandRequest{{Entity: "Contact", Record: json.RawMessage(contact),
				Paths: []string{"primary_account"}}},
			wantEntity:  `{"primary_account":{"id":"a1","name":"Acme"}}`,
			wantRelated: `null`,
		},
		{
			name:        "options without expand never call the Expander",
			opts:        projContactOptions(EntityOptions{LoadOnly: []string{"id"}}),
			event:       Event{Name: "Contact.Update", Data: json.RawMessage(contact)},
			wantEntity:  `{"id":"c1"}`,
			wantRelated: `null`,
		},
		{
			name: "expand of another entity does not apply to this one",
			opts: Options{Entity: map[string]EntityOptions{"Account": {Expand: []string{"owner"}}}},
			event: Event{Name: "Contact.DocumentLinked", Data: json.RawMessage(contact),
				Related: json.RawMessage(document), RelatedEntity: "CloudObject"},
			wantEntity:  contact,
			wantRelated: document,
		},
		{
			name:        "with no Expander the record is sent as the host gave it",
			opts:        projContactOptions(EntityOptions{Expand: []string{"primary_account"}}),
			noExpander:  true,
			event:       Event{Name: "Contact.Update", Data: json.RawMessage(contact)},
			wantEntity:  contact,
			wantRelated: `null`,
		},
		{
			name: "with no Expander load-only still applies",
			opts: Options{
				Entity:        map[string]EntityOptions{"Contact": {Expand: []string{"primary_account"}, LoadOnly: []string{"id", "primary_account"}}},
				RelatedEntity: &EntityOptions{Expand: []string{"contact"}, LoadOnly: []string{"id", "contact"}},
			},
			noExpander: true,
			event: Event{Name: "Contact.DocumentLinked", Data: json.RawMessage(contact),
				Related: json.RawMessage(document), RelatedEntity: "CloudObject"},
			wantEntity:  `{"id":"c1"}`,
			wantRelated: `{"id":"d1"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := &projExpander{answer: projAddFields(add)}
			cfg := Config{Expander: exp}
			if tt.noExpander {
				cfg.Expander = nil
			}
			items := projSend(t, tt.opts, cfg, tt.event)
			require.JSONEq(t, tt.wantEntity, string(items[0].Entity), "entity")
			require.JSONEq(t, tt.wantRelated, string(items[0].RelatedEntity), "related_entity")
			if d := cmp.Diff(tt.wantReqs, exp.requests(), projJSON, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("expand requests (-want +got):\n%s", d)
			}
		})
	}
}

// TestProjectExpandForEveryRegistration lets several registrations expand
// the same event: the Dispatcher calls the Expander from each one's
// delivery goroutine, so -race checks that nothing in between is shared
// unsafely.
func TestProjectExpandForEveryRegistration(t *testing.T) {
	const n = 4
	exp := &projExpander{answer: projAddFields(map[string]string{"Contact": `{"owner":{"id":"u1","name":"Petr"}}`})}
	r := newTestRegistry()
	rcvs := make([]*receiver, n)
	for i := range rcvs {
		rcvs[i] = newReceiver(t)
		mustCreate(t, r, Webhook{URL: rcvs[i].URL, Events: []string{"Contact.Update"},
			Options: projContactOptions(EntityOptions{Expand: []string{"owner"}, LoadOnly: []string{"id", "owner.name"}})})
	}
	d := newTestDispatcher(t, r, Config{Expander: exp})
	dispatch(t, d,
		Event{Name: "Contact.Update", Data: json.RawMessage(`{"id":"c1","owner_id":"u1"}`)},
		Event{Name: "Contact.Update", Data: json.RawMessage(`{"id":"c2","owner_id":"u1"}`)})
	for i, rcv := range rcvs {
		items := decodeItems(t, rcv.next(t).Body)
		require.Len(t, items, 2, "receiver %d", i)
		require.JSONEq(t, `{"id":"c1","owner":{"name":"Petr"}}`, string(items[0].Entity), "receiver %d", i)
		require.JSONEq(t, `{"id":"c2","owner":{"name":"Petr"}}`, string(items[1].Entity), "receiver %d", i)
	}
	require.Len(t, exp.requests(), 2*n, "one expansion per item of every registration")
}

var errProjCRMDown = errors.New("crm database unavailable")

func TestProjectExpandFailureIsAFailedDelivery(t *testing.T) {
	tests := []struct {
		name    string
		answer  func(ExpandRequest) (json.RawMessage, error)
		related bool // the related record's expansion fails, not the record's
		wantErr error
	}{
		{
			name:    "an Expander error",
			answer:  func(ExpandRequest) (json.RawMessage, error) { return nil, errProjCRMDown },
			wantErr: errProjCRMDown,
		},
		{
			name:   "an answer that is not JSON",
			answer: func(ExpandRequest) (json.RawMessage, error) { return json.RawMessage(`{"id":"c1",`), nil },
		},
		{
			name:   "an answer that is a JSON array",
			answer: func(ExpandRequest) (json.RawMessage, error) { return json.RawMessage(`[{"id":"c1"}]`), nil },
		},
		{
			name:   "an answer that is null",
			answer: func(ExpandRequest) (json.RawMessage, error) { return json.RawMessage(`null`), nil },
		},
		{
			name:   "an empty answer",
			answer: func(ExpandRequest) (json.RawMessage, error) { return nil, nil },
		},
		{
			name: "an error expanding the related record",
			answer: func(req ExpandRequest) (json.RawMessage, error) {
				if req.Entity == "CloudObject" {
					return nil, errProjCRMDown
				}
				return req.Record, nil
			},
			related: true,
			wantErr: errProjCRMDown,
		},
		{
			name: "a related answer that is a string",
			answer: func(req ExpandRequest) (json.RawMessage, error) {
				if req.Entity == "CloudObject" {
					return json.RawMessage(`"d1"`), nil
				}
				return req.Record, nil
			},
			related: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t)
			r := newTestRegistry()
			hook := mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"Contact.*"}, Options: Options{
				Entity:        map[string]EntityOptions{"Contact": {Expand: []string{"primary_account"}}},
				RelatedEntity: &EntityOptions{Expand: []string{"contact"}},
			}})
			d := newTestDispatcher(t, r, Config{Expander: &projExpander{answer: tt.answer}, Logger: quietLogger()})
			events := []Event{
				{ID: "ev-1", Name: "Contact.Update", Data: json.RawMessage(`{"id":"c1"}`)},
				{ID: "ev-2", Name: "Contact.Update", Data: json.RawMessage(`{"id":"c2"}`)},
			}
			if tt.related {
				events[1] = Event{ID: "ev-2", Name: "Contact.DocumentLinked", Data: json.RawMessage(`{"id":"c2"}`),
					Related: json.RawMessage(`{"id":"d1"}`), RelatedEntity: "CloudObject"}
			}
			ctx := context.Background()
			err := d.Dispatch(ctx, events...)
			require.Error(t, err, "the Expander runs in Dispatch, so Dispatch reports its failure")
			require.ErrorContains(t, err, "webhook "+hook.ID)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			require.NoError(t, d.Flush(ctx))
			require.Empty(t, rcv.drain(), "a refused call delivers nothing")
		})
	}
}

func TestProjectExpandFailureRefusesTheWholeCall(t *testing.T) {
	rcv := newReceiver(t)
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"Contact.*"}, Options: Options{
		ChunkSize: 1,
		Entity:    map[string]EntityOptions{"Contact": {Expand: []string{"owner"}}},
	}})
	var down atomic.Bool
	down.Store(true)
	exp := &projExpander{answer: func(req ExpandRequest) (json.RawMessage, error) {
		if gjson.GetBytes(req.Record, "id").Str == "bad" && down.Load() {
			return nil, errProjCRMDown
		}
		return projAddFields(map[string]string{"Contact": `{"owner":{"id":"u1"}}`})(req)
	}}
	d := newTestDispatcher(t, r, Config{Expander: exp, Logger: quietLogger()})
	events := []Event{
		{ID: "ev-good-1", Name: "Contact.Update", Data: json.RawMessage(`{"id":"good-1"}`)},
		{ID: "ev-bad", Name: "Contact.Update", Data: json.RawMessage(`{"id":"bad"}`)},
		{ID: "ev-good-2", Name: "Contact.Update", Data: json.RawMessage(`{"id":"good-2"}`)},
	}
	ctx := context.Background()
	err := d.Dispatch(ctx, events...)
	require.ErrorIs(t, err, errProjCRMDown)
	require.ErrorContains(t, err, "event 1 (ev-bad) for webhook "+hook.ID)
	require.NoError(t, d.Flush(ctx))
	require.Empty(t, rcv.drain(), "a refused call delivers nothing, so calling again sends no duplicate")

	down.Store(false)
	dispatch(t, d, events...)
	var got []string
	for _, req := range rcv.drain() {
		for _, it := range decodeItems(t, req.Body) {
			got = append(got, string(it.Entity))
		}
	}
	want := []string{`{"id":"good-1","owner":{"id":"u1"}}`, `{"id":"bad","owner":{"id":"u1"}}`, `{"id":"good-2","owner":{"id":"u1"}}`}
	require.Len(t, got, len(want))
	for i := range want {
		require.JSONEq(t, want[i], got[i])
	}
}

func TestProjectRelatedEntity(t *testing.T) {
	const (
		contact  = `{"id":"c1","first_name":"Jana","contact":"not the related one"}`
		document = `{"id":"d1","name":"offer.pdf","first_name":"not a contact","contact":{"id":"c1","first_name":"Jana"},"size":2048}`
	)
	tests := []struct {
		name        string
		opts        Options
		related     json.RawMessage
		wantEntity  string
		wantRelated string
	}{
		{
			name: "related_entity load-only shapes only the related record",
			opts: Options{RelatedEntity: &EntityOptions{LoadOnly: []string{"id", "contact"}}},
			// The main record has a "contact" too: it is left whole.
			related:     json.RawMessage(document),
			wantEntity:  contact,
			wantRelated: `{"id":"d1","contact":{"id":"c1","first_name":"Jana"}}`,
		},
		{
			name:        "entity load-only never touches the related record",
			opts:        projContactOptions(EntityOptions{LoadOnly: []string{"id", "first_name"}}),
			related:     json.RawMessage(document),
			wantEntity:  `{"id":"c1","first_name":"Jana"}`,
			wantRelated: document,
		},
		{
			name: "entity and related_entity load-only apply each to its own record",
			opts: Options{
				Entity:        map[string]EntityOptions{"Contact": {LoadOnly: []string{"first_name"}}},
				RelatedEntity: &EntityOptions{LoadOnly: []string{"contact.first_name", "size"}},
			},
			related:     json.RawMessage(document),
			wantEntity:  `{"first_name":"Jana"}`,
			wantRelated: `{"contact":{"first_name":"Jana"},"size":2048}`,
		},
		{
			name:        "related_entity load-only of paths the record lacks sends an empty object",
			opts:        Options{RelatedEntity: &EntityOptions{LoadOnly: []string{"owner"}}},
			related:     json.RawMessage(document),
			wantEntity:  contact,
			wantRelated: `{}`,
		},
		{
			name: "entity options under the related record's own entity name do not touch it either",
			opts: Options{Entity: map[string]EntityOptions{
				"CloudObject": {LoadOnly: []string{"id"}, Expand: []string{"contact"}},
			}},
			related:     json.RawMessage(document),
			wantEntity:  contact,
			wantRelated: document,
		},
		{
			name:        "with no related record related_entity is null",
			opts:        Options{RelatedEntity: &EntityOptions{LoadOnly: []string{"id"}}},
			wantEntity:  contact,
			wantRelated: `null`,
		},
		{
			name:        "a related record given as null is sent as null",
			opts:        Options{RelatedEntity: &EntityOptions{LoadOnly: []string{"id"}}},
			related:     json.RawMessage(`null`),
			wantEntity:  contact,
			wantRelated: `null`,
		},
		{
			name:        "with no options both records are sent whole",
			related:     json.RawMessage(document),
			wantEntity:  contact,
			wantRelated: document,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := projSend(t, tt.opts, Config{}, Event{Name: "Contact.DocumentLinked",
				Data: json.RawMessage(contact), Related: tt.related, RelatedEntity: "CloudObject"})
			require.JSONEq(t, tt.wantEntity, string(items[0].Entity), "entity")
			require.JSONEq(t, tt.wantRelated, string(items[0].RelatedEntity), "related_entity")
		})
	}
}

func TestProjectOptionsRefusedAtRegistration(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		json      string // options as a client sends them; used instead of opts when set
		wantField string
	}{
		{
			name:      "a filter under related_entity",
			opts:      Options{RelatedEntity: &EntityOptions{Filter: map[string]json.RawMessage{"id": json.RawMessage(`"d1"`)}}},
			wantField: "options.related_entity.filter",
		},
		{
			name:      "a filter under related_entity sent as JSON",
			json:      `{"related_entity":{"load-only":["id"],"filter":{"name":["offer.pdf"]}}}`,
			wantField: "options.related_entity.filter",
		},
		{
			name:      "a filter-op under related_entity",
			opts:      Options{RelatedEntity: &EntityOptions{FilterOp: map[string]string{"id": "eq"}}},
			wantField: "options.related_entity.filter-op",
		},
		{
			name:      "an on-field-change under related_entity",
			opts:      Options{RelatedEntity: &EntityOptions{OnFieldChange: []string{"name"}}},
			wantField: "options.related_entity.on-field-change",
		},
		{
			name:      "a load-only path with an empty name",
			opts:      projContactOptions(EntityOptions{LoadOnly: []string{"id", "primary_contact..first_name"}}),
			wantField: "options.entity.Contact.load-only[1]",
		},
		{
			name:      "an empty load-only path",
			opts:      projContactOptions(EntityOptions{LoadOnly: []string{""}}),
			wantField: "options.entity.Contact.load-only[0]",
		},
		{
			name:      "an expand path ending in a dot",
			opts:      projContactOptions(EntityOptions{Expand: []string{"primary_account."}}),
			wantField: "options.entity.Contact.expand[0]",
		},
		{
			name:      "a related_entity load-only path starting with a dot",
			opts:      Options{RelatedEntity: &EntityOptions{LoadOnly: []string{".id"}}},
			wantField: "options.related_entity.load-only[0]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if tt.json != "" {
				require.NoError(t, json.Unmarshal([]byte(tt.json), &opts))
			}
			r := newTestRegistry()
			_, err := r.Create(context.Background(), "", Webhook{URL: "https://example.com/hooks",
				Events: []string{"Contact.*"}, Options: opts})
			require.ErrorIs(t, err, ErrInvalid)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.wantField, fe.Field)
			hooks, err := r.List(context.Background(), "")
			require.NoError(t, err)
			require.Empty(t, hooks, "a refused registration must not be stored")
		})
	}
}

// projTopKeys returns the names of an object's fields, unescaped.
func projTopKeys(obj gjson.Result) map[string]bool {
	keys := map[string]bool{}
	obj.ForEach(func(k, _ gjson.Result) bool {
		keys[k.Str] = true
		return true
	})
	return keys
}

// FuzzProject cuts records down by load-only paths, joined by ",", and
// checks what any receiver relies on: the result is a JSON object, it
// holds only fields of the record that a path names, and cutting it again
// changes nothing.
func FuzzProject(f *testing.F) {
	seeds := [][2]string{
		{`{"id":"c1","first_name":"Jana","email1":"j@x"}`, "id,email1"},
		{`{"id":"c1","primary_account":{"id":"a1","name":"Acme"}}`, "primary_account"},
		{`{"primary_contact":{"id":"c2","first_name":"T","last_name":"D"}}`, "primary_contact.first_name,primary_contact.last_name"},
		{`{"id":"c1","primary_contact":null,"owner":"u1"}`, "id,primary_contact.first_name,owner.name,email2"},
		{`{"task_relations":[{"id":"r1","task":{"id":"t1"}},{"id":"r2"},"r3",null,[{"task":{}}],{"task":{"id":"t4"}}]}`, "task_relations.task"},
		{`{"task_relations":[]}`, "task_relations"},
		{`{"task_relations":[]}`, "task_relations.task"},
		{`{"a":{"b":1,"c":2}}`, "a,a.b"},
		{`{"a":{"b":1,"c":2}}`, "a.b,a"},
		{`{"a":{"b":1},"a":{"c":2}}`, "a.c"},
		{`{"\u0069d":"c1","i\"d":2}`, "id"},
		{"{ \"note\" : \"a \\\"q\\\" \\n\" ,\n\t\"amount\": 1.50e3 }  ", "note,amount"},
		{`{"a":[[{"b":1}],{"b":[{"c":{"d":null}}]}]}`, "a.b.c.d"},
		{`{}`, "id"},
		{`{"id":1}`, ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	if b, err := os.ReadFile("testdata/contact.json"); err == nil {
		f.Add(string(b), strings.Join(projBenchLoadOnly, ","))
		f.Add(string(b), "id,primary_account,primary_contact.first_name,task_relations.task")
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, record, paths string) {
		// Only records Dispatch accepts: no key twice in an object, no
		// nesting beyond maxDepth.
		in := gjson.Parse(record)
		if !validJSON([]byte(record), nil) || !in.IsObject() {
			return
		}
		var loadOnly []string
		if paths != "" {
			loadOnly = strings.Split(paths, ",")
		}
		p, err := compileProjection("options.entity.X", EntityOptions{LoadOnly: loadOnly})
		if err != nil {
			t.Skip(err)
		}
		out, err := p.apply(ctx, nil, "data", "", "X", in, nil, nil)
		require.NoError(t, err)
		// Read through the member spans validJSON notes, as Dispatch does.
		var m members
		require.True(t, validJSON([]byte(record), &m))
		bySpans, err := p.apply(ctx, nil, "data", "", "X", in, m.spans(), nil)
		require.NoError(t, err)
		require.Equal(t, string(out), string(bySpans), "read through the member spans")
		require.True(t, json.Valid(out), "not JSON: %q", out)
		res := gjson.ParseBytes(out)
		require.True(t, res.IsObject(), "not an object: %q", out)

		inKeys := projTopKeys(in)
		named := map[string]bool{}
		for _, s := range loadOnly {
			first, _, _ := strings.Cut(s, ".")
			named[first] = true
		}
		for k := range projTopKeys(res) {
			require.True(t, inKeys[k], "field %q is not in the record; out %q", k, out)
			require.True(t, loadOnly == nil || named[k], "field %q is named by no path; out %q", k, out)
		}

		again, err := p.apply(ctx, nil, "data", "", "X", res, nil, nil)
		require.NoError(t, err)
		require.Equal(t, string(out), string(again), "not idempotent")

		// A receiver decoding the result sees what decoding the record
		// and pruning it gives. encoding/json replaces invalid UTF-8, so
		// such records are left out.
		if p.only == nil || !utf8.ValidString(record) || !utf8.ValidString(paths) {
			return
		}
		var want, got any
		require.NoError(t, json.Unmarshal(projDecodeCut(t, []byte(record), p.only), &want))
		require.NoError(t, json.Unmarshal(out, &got))
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("cut differs from decode and prune (-want +got):\n%s", d)
		}
	})
}

// projBenchLoadOnly is a load-only of six paths: top-level, nested and
// through the task_relations array.
var projBenchLoadOnly = []string{
	"id", "email1", "owner.name", "primary_account", "primary_contact.first_name", "task_relations.task.subject",
}

func BenchmarkProject(b *testing.B) {
	rec := gjson.ParseBytes(projContact(b))
	p, err := compileProjection("options.entity.Contact", EntityOptions{LoadOnly: projBenchLoadOnly})
	require.NoError(b, err)
	ctx := context.Background()
	dst, err := p.apply(ctx, nil, "data", "", "Contact", rec, nil, nil)
	require.NoError(b, err)
	require.JSONEq(b, string(projDecodeCut(b, projContact(b), p.only)), string(dst), "the baseline cuts differently")
	b.SetBytes(int64(len(rec.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		dst, err = p.apply(ctx, nil, "data", "", "Contact", rec, nil, dst[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProjectDecodeBaseline is the same cut done the obvious way:
// decode into maps, prune, encode.
func BenchmarkProjectDecodeBaseline(b *testing.B) {
	raw := projContact(b)
	p, err := compileProjection("options.entity.Contact", EntityOptions{LoadOnly: projBenchLoadOnly})
	require.NoError(b, err)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		projDecodeCut(b, raw, p.only)
	}
}

func projDecodeCut(tb testing.TB, raw []byte, only *node) []byte {
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		tb.Fatal(err)
	}
	cut, ok := projPruneObject(only, rec)
	if !ok {
		cut = map[string]any{}
	}
	out, err := json.Marshal(cut)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func projPruneObject(n *node, m map[string]any) (map[string]any, bool) {
	out := map[string]any{}
	for _, c := range n.children {
		if v, ok := m[c.key]; ok {
			if pv, ok := projPruneValue(c, v); ok {
				out[c.key] = pv
			}
		}
	}
	return out, len(out) > 0
}

func projPruneValue(n *node, v any) (any, bool) {
	if n.whole {
		return v, true
	}
	switch v := v.(type) {
	case map[string]any:
		return projPruneObject(n, v)
	case []any:
		var out []any
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				if pm, ok := projPruneObject(n, m); ok {
					out = append(out, pm)
				}
			}
		}
		return out, len(out) > 0
	}
	return nil, false
}

// expanderFunc adapts a function to Expander.
type expanderFunc func(ctx context.Context, req ExpandRequest) (json.RawMessage, error)

func (f expanderFunc) Expand(ctx context.Context, req ExpandRequest) (json.RawMessage, error) {
	return f(ctx, req)
}

func TestProjectExpanderCannotChangeTheRegistration(t *testing.T) {
	rcv := newReceiver(t)
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"Contact.*"},
		Options: Options{Entity: map[string]EntityOptions{"Contact": {Expand: []string{"owner"}}}}})
	scribble := expanderFunc(func(_ context.Context, req ExpandRequest) (json.RawMessage, error) {
		req.Paths[0] = "scribbled"
		return req.Record, nil
	})
	d := newTestDispatcher(t, r, Config{Expander: scribble})
	dispatch(t, d, Event{Name: "Contact.Create", Data: json.RawMessage(`{"id":"c1"}`)})
	require.Len(t, rcv.drain(), 1)
	got, err := r.Get(context.Background(), "", hook.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"owner"}, got.Options.Entity["Contact"].Expand)
}
