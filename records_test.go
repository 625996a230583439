package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Records the package refuses because the request built from them would
// not be read as they were meant (finding 10 of issue 10): nested deeper
// than a receiver parses, or with a key twice in an object, which the
// filters and the receivers read differently.

// nestedRecord is an object nesting depth levels of objects and arrays,
// itself included: {"a":[{"a":[...]}]}.
func nestedRecord(depth int) json.RawMessage {
	var b strings.Builder
	for d := range depth {
		if d%2 == 0 {
			b.WriteString(`{"a":`)
		} else {
			b.WriteString("[")
		}
	}
	b.WriteString("1")
	for d := depth - 1; d >= 0; d-- {
		if d%2 == 0 {
			b.WriteString("}")
		} else {
			b.WriteString("]")
		}
	}
	return json.RawMessage(b.String())
}

// jsonDepth returns how deeply b, valid JSON, nests arrays and objects, as
// encoding/json's Decoder counts.
func jsonDepth(t *testing.T, b []byte) int {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return deepest
		}
		require.NoError(t, err)
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// answerWith is an Expander that answers every request with answer.
func answerWith(answer json.RawMessage) Expander {
	return &projExpander{answer: func(ExpandRequest) (json.RawMessage, error) { return answer, nil }}
}

// requireRefused requires err to be a refusal of a record: it wraps
// ErrInvalid, names the event (the first of the call), and its FieldError
// names field.
func requireRefused(t *testing.T, err error, field, reason string) {
	t.Helper()
	require.ErrorIs(t, err, ErrInvalid)
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, field, fe.Field)
	require.Contains(t, fe.Reason, reason)
	require.Contains(t, err.Error(), "event 0 ", "the event is not named")
}

func TestDispatchRecordDepthLimit(t *testing.T) {
	t.Run("a record at the limit is accepted, and its request decodes", func(t *testing.T) {
		rcv := newReceiver(t)
		r := newTestRegistry()
		mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"*"}})
		d := newTestDispatcher(t, r, Config{})
		dispatch(t, d, Event{Name: "Account.Update", Data: nestedRecord(maxDepth), Previous: nestedRecord(maxDepth),
			Related: nestedRecord(maxDepth), RelatedEntity: "Contact"})

		// The body a receiver gets decodes with encoding/json, and nests
		// no more than the 64 levels of the strictest common parser.
		body := rcv.next(t).Body
		var items []map[string]any
		require.NoError(t, json.Unmarshal(body, &items))
		require.Len(t, items, 1)
		require.Equal(t, maxDepth+2, jsonDepth(t, body))
		require.LessOrEqual(t, jsonDepth(t, body), 64)
	})

	deep := nestedRecord(maxDepth + 1)
	for _, tt := range []struct {
		name   string
		event  Event
		exp    Expander
		field  string
		expand bool
	}{
		{"data one level over the limit", Event{Data: deep}, nil, "data", false},
		// 9,999 levels: encoding/json reads the record, but not the request
		// built from it, two levels deeper, which was retried until dead.
		{"data that encoding/json reads, but not its request", Event{Data: nestedRecord(9_999)}, nil, "data", false},
		{"previous one level over the limit", Event{Data: account, Previous: deep}, nil, "previous", false},
		{"related one level over the limit", Event{Data: account, Related: deep, RelatedEntity: "Contact"}, nil, "related", false},
		{"the Expander's answer one level over the limit", Event{Data: account}, answerWith(deep), "data", true},
	} {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			rec := &Recorder{}
			r := newTestRegistry()
			hook := Webhook{URL: "https://example.com/hooks", Events: []string{"*"}}
			if tt.expand {
				hook.Options.Entity = map[string]EntityOptions{"Account": {Expand: []string{"owner"}}}
			}
			mustCreate(t, r, hook)
			d := newTestDispatcher(t, r, Config{Transport: rec, Expander: tt.exp})
			tt.event.Name = "Account.Update"
			err := d.Dispatch(context.Background(), tt.event)
			requireRefused(t, err, tt.field, "levels deep")
			require.Empty(t, rec.Requests())
			if !tt.expand {
				_, err = NewMatcher(r).Match(tt.event)
				requireRefused(t, err, tt.field, "levels deep")
			}
		})
	}
}

func TestDispatchRefusesDuplicateKeys(t *testing.T) {
	for _, tt := range []struct {
		name  string
		event Event
		exp   Expander
		field string // and where the object is
		key   string
	}{
		{"in data", Event{Data: json.RawMessage(`{"id":"a1","status":"closed","status":"open"}`)}, nil, "data", "status"},
		{"in data, spelled with an escape", Event{Data: json.RawMessage(`{"id":"a1","status":"closed","st\u0061tus":"open"}`)}, nil, "data", "status"},
		{"in an object inside data", Event{Data: json.RawMessage(`{"id":"a1","owner":{"id":"u1","email":"a@x","email":"b@x"}}`)}, nil, "data.owner", "email"},
		{"in an object in an array inside data", Event{Data: json.RawMessage(`{"id":"a1","contacts":[{"id":"c1"},{"id":"c2","id":"c3"}]}`)}, nil, "data.contacts[1]", "id"},
		{"in previous", Event{Data: account, Previous: json.RawMessage(`{"id":"a1","name":"Acme","name":"Old"}`)}, nil, "previous", "name"},
		// Previous repeats data's members, which are not scanned again;
		// the key they share with its own is found all the same.
		{"in previous, once in a member it shares with data", Event{Data: account, Previous: json.RawMessage(`{"id":"a1","name":"Acme","id":"a2"}`)}, nil, "previous", "id"},
		{"in related", Event{Data: account, Related: json.RawMessage(`{"id":"c1","id":"c2"}`), RelatedEntity: "Contact"}, nil, "related", "id"},
		{"in the Expander's answer", Event{Data: account}, answerWith(json.RawMessage(`{"id":"a1","owner":{"id":"u1"},"owner":{"id":"u2"}}`)), "data", "owner"},
	} {
		t.Run("a key twice "+tt.name+" is refused", func(t *testing.T) {
			rec := &Recorder{}
			r := newTestRegistry()
			hook := Webhook{URL: "https://example.com/hooks", Events: []string{"*"}}
			if tt.exp != nil {
				hook.Options.Entity = map[string]EntityOptions{"Account": {Expand: []string{"owner"}}}
			}
			mustCreate(t, r, hook)
			d := newTestDispatcher(t, r, Config{Transport: rec, Expander: tt.exp})
			tt.event.Name = "Account.Update"
			err := d.Dispatch(context.Background(), tt.event)
			requireRefused(t, err, tt.field, `"`+tt.key+`" twice`)
			require.Empty(t, rec.Requests())
			if tt.exp == nil {
				_, err = NewMatcher(r).Match(tt.event)
				requireRefused(t, err, tt.field, `"`+tt.key+`" twice`)
			}
		})
	}
}

// TestDuplicateKeysNoLongerSplitFiltersFromReceivers: a filter read the
// first of two keys while a receiver reads the last, so a record could be
// sent for a value the filter never saw. Such a record is refused instead,
// and an update whose records agree is matched as before.
func TestDuplicateKeysNoLongerSplitFiltersFromReceivers(t *testing.T) {
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/open", Events: []string{"Opportunity.Update"},
		Options: Options{Entity: map[string]EntityOptions{"Opportunity": {
			Filter: map[string]json.RawMessage{"status": json.RawMessage(`"open"`)}, OnFieldChange: []string{"status"}}}}})
	m := NewMatcher(r)
	_, err := m.Match(Event{Name: "Opportunity.Update", Data: json.RawMessage(`{"status":"open","status":"won"}`)})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = m.Match(Event{Name: "Opportunity.Update", Data: json.RawMessage(`{"status":"open"}`),
		Previous: json.RawMessage(`{"status":"lost","status":"open"}`)})
	require.ErrorIs(t, err, ErrInvalid)
	require.Equal(t, []string{"https://example.com/open"}, matchURLs(t, m, Event{Name: "Opportunity.Update",
		Data: json.RawMessage(`{"status":"open"}`), Previous: json.RawMessage(`{"status":"lost"}`)}))
}
