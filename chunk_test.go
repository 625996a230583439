package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

func TestPayloadItem(t *testing.T) {
	clock := newFakeClock()
	created := time.Date(2026, 11, 20, 8, 30, 5, 0, time.UTC)
	cet := time.FixedZone("CET", 3600)
	tests := []struct {
		name      string
		space     string
		signature string
		events    []Event
		want      func(hook string) string // the body, given the registration's JSON
	}{
		{
			name:      "the item has every field of reference.md and the webhook has no signature",
			space:     "space-7",
			signature: "01234567-abcd-dcba-ffff-000000000000",
			events: []Event{{Space: "space-7", Name: "Contact.Update", Data: json.RawMessage(`{"id":"c1","email1":"a@x.com"}`),
				Related: json.RawMessage(`{"id":"d1"}`), RelatedEntity: "CloudObject"}},
			want: func(hook string) string {
				return `[{"webhook":` + hook + `,"event":"Contact.Update","event_time":"2026-11-26T10:15:00.123456Z",` +
					`"team_space_id":"space-7","entity":{"id":"c1"},"related_entity":{"id":"d1"}}]`
			},
		},
		{
			name:   "an event in the default space has an empty team_space_id and a null related_entity",
			events: []Event{{Name: "Contact.Create", Data: json.RawMessage(`{"id":"c1"}`)}},
			want: func(hook string) string {
				return `[{"webhook":` + hook + `,"event":"Contact.Create","event_time":"2026-11-26T10:15:00.123456Z",` +
					`"team_space_id":"","entity":{"id":"c1"},"related_entity":null}]`
			},
		},
		{
			name:  "an explicit event time is kept, written in UTC with microseconds",
			space: "space-7",
			events: []Event{
				{Space: "space-7", Name: "Contact.Update", Data: json.RawMessage(`{"id":"c1"}`),
					Time: time.Date(2026, 1, 2, 3, 4, 5, 678901234, cet)},
				{Space: "space-7", Name: "Contact.Delete", Data: json.RawMessage(`{"id":"c2"}`),
					Time: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)},
				{Space: "space-7", Name: "Contact.OwnerChanged", Data: json.RawMessage(`{"id":"c3"}`)},
			},
			want: func(hook string) string {
				return `[` +
					`{"webhook":` + hook + `,"event":"Contact.Update","event_time":"2026-01-02T02:04:05.678901Z",` +
					`"team_space_id":"space-7","entity":{"id":"c1"},"related_entity":null},` +
					`{"webhook":` + hook + `,"event":"Contact.Delete","event_time":"2026-07-01T00:00:00.000000Z",` +
					`"team_space_id":"space-7","entity":{"id":"c2"},"related_entity":null},` +
					`{"webhook":` + hook + `,"event":"Contact.OwnerChanged","event_time":"2026-11-26T10:15:00.123456Z",` +
					`"team_space_id":"space-7","entity":{"id":"c3"},"related_entity":null}]`
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t)
			r := newRegistry(RegistryConfig{Addresses: loopback, Clock: clockAt(created)})
			opts := Options{Entity: map[string]EntityOptions{"Contact": {LoadOnly: []string{"id"}}}, SkipKeys: []string{"gmail_sync"}}
			hook := mustCreate(t, r, Webhook{Space: tt.space, URL: rcv.URL, Events: []string{"Contact.*"},
				Options: opts, Signature: tt.signature})
			d := newTestDispatcher(t, r, Config{Clock: clock})
			dispatch(t, d, tt.events...)
			req := rcv.next(t)

			// The registration as reference.md lists it: id, url, events,
			// options, insecure_ssl, created, modified; never signature.
			hookJSON := `{"id":"` + hook.ID + `","url":"` + rcv.URL + `","events":["Contact.*"],` +
				`"options":{"entity":{"Contact":{"load-only":["id"]}},"skip_keys":["gmail_sync"]},` +
				`"insecure_ssl":false,"created":"2026-11-20T08:30:05","modified":"2026-11-20T08:30:05"}`
			var want, got any
			require.NoError(t, json.Unmarshal([]byte(tt.want(hookJSON)), &want))
			require.NoError(t, json.Unmarshal(req.Body, &got), "body: %s", req.Body)
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("body (-want +got):\n%s", d)
			}
			require.NotContains(t, string(req.Body), "signature")
			if tt.signature != "" {
				require.NoError(t, VerifySignature(tt.signature, req.Body, req.Header.Get(HeaderSignature)),
					"the request is still signed")
			}
			for _, it := range decodeItems(t, req.Body) {
				ts, err := time.Parse(time.RFC3339Nano, it.EventTime)
				require.NoError(t, err, "event_time %q is not RFC 3339", it.EventTime)
				require.Equal(t, time.UTC, ts.Location(), "event_time %q is not in UTC", it.EventTime)
			}
		})
	}
}

func TestDispatchChunksItemsInEventOrder(t *testing.T) {
	rcv := newReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"Account.*"}, Options: Options{ChunkSize: 2}})
	d := newTestDispatcher(t, r, Config{})
	var events []Event
	for i := range 5 {
		name := "Account.Create"
		if i%2 == 1 {
			name = "Account.Update"
		}
		events = append(events, Event{Name: name, Data: json.RawMessage(fmt.Sprintf(`{"id":"a%d"}`, i))})
	}
	events = append(events, Event{Name: "Contact.Create", Data: account}) // fires nothing
	dispatch(t, d, events...)

	var got [][]string
	for _, req := range rcv.drain() {
		var ids []string
		for _, it := range decodeItems(t, req.Body) {
			var rec struct{ ID string }
			require.NoError(t, json.Unmarshal(it.Entity, &rec))
			ids = append(ids, it.Event+" "+rec.ID)
		}
		got = append(got, ids)
	}
	want := [][]string{
		{"Account.Create a0", "Account.Update a1"},
		{"Account.Create a2", "Account.Update a3"},
		{"Account.Create a4"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("chunks (-want +got):\n%s", d)
	}
}

// TestDispatchCutsEachRecordByItsOwnMembers dispatches records of
// different shapes in one call: Dispatch keeps where each record's members
// are, for load-only, and a record read through another's would come out
// cut in the wrong places.
func TestDispatchCutsEachRecordByItsOwnMembers(t *testing.T) {
	rcv := newReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"Contact.*"},
		Options: Options{Entity: map[string]EntityOptions{"Contact": {LoadOnly: []string{"id", "name"}}}}})
	d := newTestDispatcher(t, r, Config{})
	var many strings.Builder // more members than validJSON notes
	for i := range 70 {
		fmt.Fprintf(&many, `"f%d":%d,`, i, i)
	}
	records := []string{
		`{"id":"c1","name":"Ann"}`,
		`{"email":"bob@example.com","name":"Bob, with a longer name","id":"c2"}`,
		`{"id":"a1","name":"An account"}`, // an Account: fires nothing
		` { "id" : "c3" , "name" : { "first" : "Cy" } , "tags" : [ 1 , 2 ] } `,
		`{` + many.String() + `"name":"Di","id":"c4"}`,
		`{}`,
		`{"id":"c5"}`,
	}
	var events []Event
	for i, rec := range records {
		name := "Contact.Update"
		if i == 2 {
			name = "Account.Update"
		}
		events = append(events, Event{Name: name, Data: json.RawMessage(rec)})
	}
	dispatch(t, d, events...)

	var got []string
	for _, req := range rcv.drain() {
		for _, it := range decodeItems(t, req.Body) {
			got = append(got, string(it.Entity))
		}
	}
	want := []string{
		`{"id":"c1","name":"Ann"}`,
		`{"name":"Bob, with a longer name","id":"c2"}`,
		`{"id":"c3","name":{ "first" : "Cy" }}`,
		`{"name":"Di","id":"c4"}`,
		`{}`,
		`{"id":"c5"}`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("items (-want +got):\n%s", d)
	}
}

func TestDispatchDefaultChunkSizeIs100(t *testing.T) {
	rec := &Recorder{}
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}})
	d := newTestDispatcher(t, r, Config{Transport: rec})
	events := make([]Event, 250)
	for i := range events {
		events[i] = Event{Name: "Task.Create", Data: account}
	}
	dispatch(t, d, events...)
	var sizes []int
	for _, req := range rec.Requests() {
		sizes = append(sizes, len(decodeItems(t, req.Body)))
	}
	require.Equal(t, []int{100, 100, 50}, sizes)
}

func TestDispatchDoesNotMixCallsInAChunk(t *testing.T) {
	rec := &Recorder{}
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}})
	d := newTestDispatcher(t, r, Config{Transport: rec})
	dispatch(t, d, Event{Name: "Task.Create", Data: account})
	dispatch(t, d, Event{Name: "Task.Update", Data: account})
	require.Len(t, rec.Requests(), 2)
}

func TestDispatchDelaysChunkNByNTimesChunkDelay(t *testing.T) {
	ctx := context.Background()
	rcv := newReceiver(t)
	clock := newFakeClock()
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: rcv.URL + "/slow", Events: []string{"Account.*"}, Options: Options{ChunkSize: 1, ChunkDelay: 300}})
	mustCreate(t, r, Webhook{URL: rcv.URL + "/fast", Events: []string{"Account.*"}, Options: Options{ChunkSize: 1}})
	q := NewMemoryQueue(QueueLimits{})
	d := newTestDispatcher(t, r, Config{Clock: clock, Queue: q})
	start := clock.Now()
	nextDue := func() time.Duration {
		t.Helper()
		at, ok, err := q.NextDue(ctx)
		require.NoError(t, err)
		require.True(t, ok)
		return at.Sub(start)
	}

	events := []Event{{Name: "Account.Create", Data: account}, {Name: "Account.Update", Data: account}, {Name: "Account.Delete", Data: account}}
	require.NoError(t, d.Dispatch(ctx, events...))
	flushed := make(chan error, 1)
	go func() { flushed <- d.Flush(ctx) }()

	// Chunk 0 of the delayed registration and every chunk of the other go
	// at once; the delay holds up nobody else.
	paths := map[string]int{}
	for range 4 {
		paths[rcv.next(t).Path]++
	}
	require.Equal(t, map[string]int{"/slow": 1, "/fast": 3}, paths)
	require.Equal(t, 300*time.Second, nextDue(), "chunks 1 and 2 wait")

	// Another call is not queued behind the waiting chunks.
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Account.Update", Data: account}))
	second := map[string]int{}
	for range 2 {
		second[rcv.next(t).Path]++
	}
	require.Equal(t, map[string]int{"/slow": 1, "/fast": 1}, second)

	clock.Advance(299 * time.Second)
	// A request made after the clock moved shows that the Dispatcher has
	// looked at the Queue since, and left chunk 1 where it was.
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Account.Create", Data: json.RawMessage(`{"id":"probe"}`)}))
	probe := map[string]int{}
	for range 2 {
		probe[rcv.next(t).Path]++
	}
	require.Equal(t, map[string]int{"/slow": 1, "/fast": 1}, probe, "the probe's chunk 0 goes to both")
	require.Equal(t, 300*time.Second, nextDue(), "chunk 1 is not sent before 300 s")
	clock.Advance(time.Second)
	require.Equal(t, "Account.Update", decodeItems(t, rcv.next(t).Body)[0].Event)
	// Its outcome is recorded before the clock jumps past its lease: a
	// delivery still in flight when its lease ends is another's to send.
	waitSettled(t, q)
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned %v before the last chunk was due", err)
	default:
	}
	clock.Advance(300 * time.Second)
	require.Equal(t, "Account.Delete", decodeItems(t, rcv.next(t).Body)[0].Event)
	require.NoError(t, <-flushed)
	require.Empty(t, rcv.drain())
}
