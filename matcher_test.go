package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

var account = json.RawMessage(`{"id":"a1","name":"Acme"}`)

func TestMatchByEventName(t *testing.T) {
	r := newTestRegistry()
	for _, w := range []Webhook{
		{URL: "https://example.com/exact", Events: []string{"Account.Create"}},
		{URL: "https://example.com/entity", Events: []string{"Account.*"}},
		{URL: "https://example.com/all", Events: []string{"*"}},
		{URL: "https://example.com/overlap", Events: []string{"Account.Create", "Account.*", "*", "Account.Create"}},
		{URL: "https://example.com/contact", Events: []string{"Contact.Create", "Contact.*"}},
		{URL: "https://example.com/update", Events: []string{"Account.Update", "Opportunity.Won"}},
	} {
		mustCreate(t, r, w)
	}
	m := NewMatcher(r)
	tests := []struct {
		event string
		want  []string
	}{
		{"Account.Create", []string{"https://example.com/exact", "https://example.com/entity", "https://example.com/all", "https://example.com/overlap"}},
		{"Account.Update", []string{"https://example.com/entity", "https://example.com/all", "https://example.com/overlap", "https://example.com/update"}},
		{"Account.Delete", []string{"https://example.com/entity", "https://example.com/all", "https://example.com/overlap"}},
		{"Contact.Create", []string{"https://example.com/all", "https://example.com/overlap", "https://example.com/contact"}},
		{"Opportunity.Won", []string{"https://example.com/all", "https://example.com/overlap", "https://example.com/update"}},
		{"Opportunity.Lost", []string{"https://example.com/all", "https://example.com/overlap"}},
	}
	for _, tt := range tests {
		t.Run(tt.event+" fires each listener once, in creation order", func(t *testing.T) {
			got := matchURLs(t, m, Event{Name: tt.event, Data: account})
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("matched (-want +got):\n%s", d)
			}
		})
	}
}

func TestMatchNeverCrossesSpaces(t *testing.T) {
	r := newTestRegistry()
	mustCreate(t, r, Webhook{Space: "team-1", URL: "https://example.com/1", Events: []string{"*"}})
	mustCreate(t, r, Webhook{Space: "team-2", URL: "https://example.com/2", Events: []string{"Account.Create"}})
	mustCreate(t, r, Webhook{URL: "https://example.com/default", Events: []string{"Account.*"}})
	m := NewMatcher(r)
	for space, want := range map[string][]string{
		"team-1": {"https://example.com/1"},
		"team-2": {"https://example.com/2"},
		"":       {"https://example.com/default"},
		"team-3": {},
	} {
		got := matchURLs(t, m, Event{Space: space, Name: "Account.Create", Data: account})
		require.Equal(t, want, got, "space %q", space)
	}
}

func TestMatchCustomEntityAPINames(t *testing.T) {
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/invoices", Events: []string{"CustomEntity.*"},
		Options: Options{CustomEntityAPIName: []string{"CE_Invoice", "CE_Credit"}}})
	mustCreate(t, r, Webhook{URL: "https://example.com/every-custom", Events: []string{"CustomEntity.Create"}})
	mustCreate(t, r, Webhook{URL: "https://example.com/all", Events: []string{"*"},
		Options: Options{CustomEntityAPIName: []string{"CE_Invoice"}}})
	m := NewMatcher(r)
	tests := []struct {
		name  string
		event Event
		want  []string
	}{
		{"a listed custom entity fires", Event{Name: "CustomEntity.Create", CustomEntity: "CE_Invoice"},
			[]string{"https://example.com/invoices", "https://example.com/every-custom", "https://example.com/all"}},
		{"an unlisted one fires only registrations without a list", Event{Name: "CustomEntity.Create", CustomEntity: "CE_Asset"},
			[]string{"https://example.com/every-custom"}},
		{"the list narrows only custom entity events", Event{Name: "Account.Create"},
			[]string{"https://example.com/all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.event.Data = account
			require.Equal(t, tt.want, matchURLs(t, m, tt.event))
		})
	}
}

func TestMatchSkipKeys(t *testing.T) {
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/skips", Events: []string{"Account.*"},
		Options: Options{SkipKeys: []string{"gmail_sync", "my integration"}}})
	mustCreate(t, r, Webhook{URL: "https://example.com/plain", Events: []string{"Account.*"}})
	m := NewMatcher(r)
	for key, want := range map[string][]string{
		"my integration": {"https://example.com/plain"},
		"gmail_sync":     {"https://example.com/plain"},
		"other":          {"https://example.com/skips", "https://example.com/plain"},
		"":               {"https://example.com/skips", "https://example.com/plain"},
	} {
		got := matchURLs(t, m, Event{Name: "Account.Update", Data: account, SkipKey: key})
		require.Equal(t, want, got, "skip key %q", key)
	}
}

func TestMatchRefusesMalformedEvents(t *testing.T) {
	m := NewMatcher(newTestRegistry())
	tests := []struct {
		name  string
		event Event
		field string
	}{
		{"an unknown event name", Event{Name: "Account.Explode", Data: account}, "name"},
		{"an unknown entity", Event{Name: "Spaceship.Create", Data: account}, "name"},
		{"a wildcard name", Event{Name: "Account.*", Data: account}, "name"},
		{"no data", Event{Name: "Account.Create"}, "data"},
		{"data that is a list", Event{Name: "Account.Create", Data: json.RawMessage(`[{"id":1}]`)}, "data"},
		{"data that is not JSON", Event{Name: "Account.Create", Data: json.RawMessage(`{"id":`)}, "data"},
		{"data that is null", Event{Name: "Account.Create", Data: json.RawMessage(`null`)}, "data"},
		{"a custom entity event without its API name", Event{Name: "CustomEntity.Update", Data: account}, "custom_entity"},
		{"a previous record that is a string", Event{Name: "Account.Update", Data: account, Previous: json.RawMessage(`"x"`)}, "previous"},
		{"a related record that is not JSON", Event{Name: "Account.DocumentLinked", Data: account, Related: json.RawMessage(`{`)}, "related"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Match(tt.event)
			requireFieldError(t, err, tt.field)
			require.Contains(t, err.Error(), fmt.Sprintf("%q", tt.event.Name), "the error names the event")
		})
	}
}

func TestMatchSeesRegistryChanges(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	m := NewMatcher(r)
	w := mustCreate(t, r, Webhook{URL: "https://example.com/a", Events: []string{"Account.Create"}})
	ev := Event{Name: "Account.Update", Data: account}
	require.Empty(t, matchURLs(t, m, ev))

	w.Events = []string{"Account.Update"}
	_, err := r.Update(ctx, "", w.ID, replace(w))
	require.NoError(t, err)
	require.Equal(t, []string{"https://example.com/a"}, matchURLs(t, m, ev))
	require.Empty(t, matchURLs(t, m, Event{Name: "Account.Create", Data: account}))

	require.NoError(t, r.Delete(ctx, "", w.ID))
	require.Empty(t, matchURLs(t, m, ev))
}

func TestMatchReturnsTheStoredRegistration(t *testing.T) {
	r := newTestRegistry()
	w := mustCreate(t, r, Webhook{URL: "https://example.com/a", Events: []string{"*"}, Signature: testSignature})
	hooks, err := NewMatcher(r).Match(Event{Name: "Task.Comment", Data: account})
	require.NoError(t, err)
	require.Len(t, hooks, 1)
	if d := cmp.Diff(w, *hooks[0]); d != "" {
		t.Fatalf("matched registration (-stored +matched):\n%s", d)
	}
	again, err := NewMatcher(r).Match(Event{Name: "Task.Comment", Data: account})
	require.NoError(t, err)
	require.Same(t, hooks[0], again[0], "Match hands out the shared copy, not a new one")
}

// matchBench fills a registry with n registrations, ten a space (one for
// each of ten entities), as a multi-tenant CRM has them.
func matchBench(b *testing.B, n int) (*Registry, []*registration) {
	r := newTestRegistry()
	entities := []string{"Account", "Contact", "Opportunity", "Lead", "Task", "Email", "Appointment", "Product", "Memo", "Quote"}
	actions := []string{"Create", "Update", "Delete"}
	var all []*registration
	for i := range n {
		ent := entities[i%len(entities)]
		events := []string{ent + "." + actions[i/len(entities)%len(actions)]}
		if i%17 == 0 {
			events = []string{ent + ".*"}
		}
		w := mustCreate(b, r, Webhook{Space: fmt.Sprintf("space-%d", i/len(entities)), URL: "https://example.com/h", Events: events})
		all = append(all, r.byID[spaceID{w.Space, w.ID}])
	}
	return r, all
}

var benchEvent = Event{Space: "space-7", Name: "Opportunity.Update", Data: json.RawMessage(`{"id":"o1","name":"Big deal","value":1000}`)}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("registrations=%d", n), func(b *testing.B) {
			r, _ := matchBench(b, n)
			m := NewMatcher(r)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Match(benchEvent); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMatchLinearScan is the baseline the index is compared to: every
// registration checked against the event's space and name.
func BenchmarkMatchLinearScan(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("registrations=%d", n), func(b *testing.B) {
			_, all := matchBench(b, n)
			entity, _, _ := strings.Cut(benchEvent.Name, ".")
			b.ReportAllocs()
			for b.Loop() {
				var out []*Webhook
				for _, reg := range all {
					if reg.hook.Space != benchEvent.Space {
						continue
					}
					for _, e := range reg.hook.Events {
						if e == benchEvent.Name || e == entity+".*" || e == "*" {
							out = append(out, &reg.hook)
							break
						}
					}
				}
				_ = out
			}
		})
	}
}

// BenchmarkRegistryUpdate shows that a change costs in proportion to the
// registration, not to the number of registrations.
func BenchmarkRegistryUpdate(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("registrations=%d", n), func(b *testing.B) {
			r, all := matchBench(b, n)
			w := all[n/2].hook
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Update(ctx, w.Space, w.ID, replace(w)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestIndexedMatchAgreesWithTryingEveryRegistration checks the equality
// index against its definition: Match must fire exactly the registrations
// that trying every registration of the event's space and name would,
// whatever mix of values, types, lists and missing fields the filters and
// records hold.
func TestIndexedMatchAgreesWithTryingEveryRegistration(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := []string{`"a"`, `"b"`, `"A"`, `"5"`, `"5.0"`, `5`, `true`, `false`, `"true"`, `null`, `""`}
	pick := func() string { return values[rng.IntN(len(values))] }
	filterValue := func() string {
		if rng.IntN(3) > 0 {
			return pick()
		}
		return "[" + pick() + "," + pick() + "]"
	}
	ops := []string{"", "eq", "not-eq", "ieq"}
	r := newTestRegistry()
	events := []string{"Account.Update", "Account.*", "*", "Contact.Update"}
	newWebhook := func(i int) Webhook {
		o := EntityOptions{Filter: map[string]json.RawMessage{}, FilterOp: map[string]string{}}
		for _, f := range []string{"x", "y", "n.z"} {
			if rng.IntN(2) == 0 {
				o.Filter[f] = json.RawMessage(filterValue())
				if op := ops[rng.IntN(len(ops))]; op != "" {
					o.FilterOp[f] = op
				}
			}
		}
		if len(o.Filter) == 0 {
			o.Filter = nil
		}
		if len(o.FilterOp) == 0 {
			o.FilterOp = nil
		}
		return Webhook{Space: fmt.Sprint(i % 3), URL: fmt.Sprintf("https://example.com/%d", i),
			Events: []string{events[rng.IntN(len(events))]}, Options: Options{Entity: map[string]EntityOptions{"Account": o}}}
	}
	var ids []string
	for i := range 400 {
		ids = append(ids, mustCreate(t, r, newWebhook(i)).ID)
	}
	spaceOf := func(i int) string { return fmt.Sprint(i % 3) }
	recordValue := func() string {
		switch rng.IntN(4) {
		case 0:
			return "[" + pick() + "," + pick() + "]"
		case 1:
			return `[{"z":` + pick() + `}]`
		}
		return pick()
	}
	m := NewMatcher(r)
	check := func() {
		t.Helper()
		for range 1000 {
			members := []string{}
			for _, f := range []string{"x", "y"} {
				if rng.IntN(4) > 0 {
					members = append(members, `"`+f+`":`+recordValue())
				}
			}
			if rng.IntN(2) == 0 {
				members = append(members, `"n":{"z":`+recordValue()+`}`)
			}
			e := Event{Space: fmt.Sprint(rng.IntN(3)), Name: "Account.Update", Data: json.RawMessage("{" + strings.Join(members, ",") + "}")}
			got := matchURLs(t, m, e)

			var ev event
			require.NoError(t, r.parseEvent(&ev, 0, e, nil, nil))
			want := []string{}
			for _, reg := range r.index.all(e.Space) {
				if !slices.ContainsFunc(slices.Collect(indexKeys(reg.hook.Events)), func(k string) bool { return k == e.Name || k == "Account.*" || k == "*" }) {
					continue
				}
				data, prev := fields{data: ev.data}, fields{data: ev.previous}
				if reg.fires(&ev, &data, &prev) {
					want = append(want, reg.hook.URL)
				}
			}
			require.Equal(t, want, got, "record %s in space %s", e.Data, e.Space)
		}
	}
	check()

	// Removals must leave the index as if the registrations had never
	// been filed, however many others share their values.
	ctx := context.Background()
	for i, id := range ids {
		switch rng.IntN(4) {
		case 0:
			require.NoError(t, r.Delete(ctx, spaceOf(i), id))
		case 1:
			_, err := r.Update(ctx, spaceOf(i), id, replace(newWebhook(400+i)))
			require.NoError(t, err)
		case 2:
			dis, err := r.disable(ctx, r.byID[spaceID{spaceOf(i), id}].key, "gone", time.Now())
			require.NoError(t, err)
			require.NotNil(t, dis)
		}
	}
	check()
}

// TestManyRegistrationsOnOneValue files more registrations under one
// value than the index scans (eqScan), so that it keeps their places
// (eqPos), and removes them in random order: Match finds exactly those
// left, and the index ends empty.
func TestManyRegistrationsOnOneValue(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	r := newTestRegistry()
	m := NewMatcher(r)
	live := map[string]string{} // url by id
	for i := range 3 * eqScan {
		value := `"a"`
		if i%3 == 0 {
			value = `["b","a"]`
		}
		w := mustCreate(t, r, Webhook{URL: fmt.Sprintf("https://example.com/%d", i), Events: []string{"Account.Update"},
			Options: Options{Entity: map[string]EntityOptions{"Account": {Filter: map[string]json.RawMessage{"x": json.RawMessage(value)}}}}})
		live[w.ID] = w.URL
	}
	require.NotEmpty(t, r.index.eqPos, "the index keeps the places of a long list")
	ids := slices.Sorted(maps.Keys(live))
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	for _, id := range ids {
		want := slices.Sorted(maps.Values(live))
		got := matchURLs(t, m, Event{Name: "Account.Update", Data: json.RawMessage(`{"x":"a"}`)})
		slices.Sort(got)
		require.Equal(t, want, got)
		require.NoError(t, r.Delete(ctx, "", id))
		delete(live, id)
	}
	require.Empty(t, matchURLs(t, m, Event{Name: "Account.Update", Data: json.RawMessage(`{"x":"a"}`)}))
	require.Empty(t, r.index.eq)
	require.Empty(t, r.index.eqMore)
	require.Empty(t, r.index.eqPos)
}

// TestIndexKeys: "*" files a registration once for everything, "Entity.*"
// for the rest of its entity, and a name listed twice once.
func TestIndexKeys(t *testing.T) {
	for _, tt := range []struct{ events, want []string }{
		{[]string{"Account.Create", "Account.*", "Account.Create", "Contact.Update", "Contact.Update"}, []string{"Account.*", "Contact.Update"}},
		{[]string{"Account.Create", "*", "Contact.*"}, []string{"*"}},
		{[]string{"Contact.Create", "Account.Create"}, []string{"Contact.Create", "Account.Create"}},
		{nil, nil},
	} {
		require.Equal(t, tt.want, slices.Collect(indexKeys(tt.events)), "%q", tt.events)
	}
}

// Match builds the copy of a registration it hands out once: after that
// it allocates its result only.
func TestMatchAllocatesOnlyItsResult(t *testing.T) {
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/a", Events: []string{"Account.*"},
		Options: Options{Entity: map[string]EntityOptions{"Account": {Filter: map[string]json.RawMessage{"name": json.RawMessage(`"Acme"`)}}}}})
	m := NewMatcher(r)
	ev := Event{Name: "Account.Update", Data: account}
	require.Len(t, matchURLs(t, m, ev), 1)
	require.Equal(t, 1.0, testing.AllocsPerRun(100, func() {
		if _, err := m.Match(ev); err != nil {
			t.Fatal(err)
		}
	}))
}

// TestRecordsWithSpaceAround checks that white space before and after a
// record, which JSON allows, changes neither what fires nor what is sent:
// fields are read through offsets the validator notes, which must be the
// offsets of the record as gjson holds it.
func TestRecordsWithSpaceAround(t *testing.T) {
	r := newTestRegistry()
	opts := Options{Entity: map[string]EntityOptions{"Opportunity": {
		Filter:        map[string]json.RawMessage{"status": json.RawMessage(`"open"`), "value.currency": json.RawMessage(`"EUR"`)},
		OnFieldChange: []string{"value.amount"},
		LoadOnly:      []string{"id", "status", "value.amount"},
	}}}
	mustCreate(t, r, Webhook{URL: "https://example.com/opps", Events: []string{"Opportunity.Update"}, Options: opts})
	m := NewMatcher(r)
	data := `{"id":"o1","name":"Deal","status":"open","value":{"amount":200,"currency":"EUR"}}`
	prev := `{"id":"o1","name":"Deal","status":"open","value":{"amount":100,"currency":"EUR"}}`
	rec := &Recorder{}
	d := newTestDispatcher(t, r, Config{Transport: rec})
	for _, space := range []string{"", " ", "\n\t  \r\n", strings.Repeat(" ", 100)} {
		for _, e := range []Event{
			{Name: "Opportunity.Update", Data: json.RawMessage(space + data + space), Previous: json.RawMessage(prev + space)},
			{Name: "Opportunity.Update", Data: json.RawMessage(data), Previous: json.RawMessage(space + prev)},
			{Name: "Opportunity.Update", Data: json.RawMessage(space + data), Previous: json.RawMessage(space + data)}, // unchanged
		} {
			e.Time = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
			e.ID = "e1"
			want := []string{"https://example.com/opps"}
			if strings.TrimSpace(string(e.Data)) == strings.TrimSpace(string(e.Previous)) {
				want = []string{}
			}
			require.Equal(t, want, matchURLs(t, m, e), "Data %q, Previous %q", e.Data, e.Previous)
			dispatch(t, d, e)
		}
	}
	reqs := rec.Requests()
	require.Len(t, reqs, 8)
	for _, req := range reqs {
		items := decodeItems(t, req.Body)
		require.Len(t, items, 1)
		require.JSONEq(t, `{"id":"o1","status":"open","value":{"amount":200}}`, string(items[0].Entity))
	}
}
