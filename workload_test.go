package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// The benchmarks of issue 4 ("Performance") share one workload: a
// Pipeliner-like Opportunity of about 1.5 KB (testdata/opportunity-1.5k.json)
// and registrations spread over 1,000 spaces and the whole event catalogue,
// most with a filter on owner_id and status, some with on-field-change, a
// few with load-only. scripts/bench runs them all, on one core:
//
//	go test -run '^$' -bench Workload -benchmem -cpu 1 -count 10 -timeout 60m .

const (
	workloadSpaces = 1000
	workloadOwners = 1000 // owners the filters name; none is the record's
	workloadSpace  = "space-0"
	workloadEvent  = "Opportunity.Update"
	workloadOwner  = "c0ffee00-1234-4abc-8def-0123456789ab" // the record's owner_id
)

// workloadLoadOnly is the load-only of the workload: five paths, one nested.
var workloadLoadOnly = []string{"id", "name", "status", "value.amount", "closing_date"}

// workloadFilterFields are the distinct fields the workload's filters read:
// the only keys newWorkload puts in a filter.
var workloadFilterFields = []string{"owner_id", "status"}

var workloadEpoch = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func workloadRecord(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(tb, err)
	require.Equal(tb, workloadOwner, gjson.GetBytes(b, "owner_id").Str)
	return b
}

// workloadUUID is a deterministic UUID, distinct for each (kind, i).
func workloadUUID(kind, i int) string {
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", i, kind, i)
}

// workloadFilter is the filter the firing registrations share: the
// record's owner among others, and its status.
func workloadFilter() map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"owner_id": json.RawMessage(`["` + workloadUUID(2, 0) + `","` + workloadOwner + `"]`),
		"status":   json.RawMessage(`["open","pending"]`),
	}
}

// workload is a Registry and the event the benchmarks match against it:
// an Opportunity.Update in space-0 that fires exactly five registrations.
type workload struct {
	reg   *Registry
	event Event
}

// newWorkload registers the five registrations that fire for the
// benchmark event, then n more drawn deterministically, and checks that
// the event fires the five and no other. Registration i is in space
// i%1000. 85% have a filter on owner_id and status for each entity they
// listen to (for "*", Opportunity's), naming owners other than the
// record's, so that none fires; of those 20% have on-field-change and 5%
// load-only. The other 15% have no filter and listen to events of other
// entities than Opportunity only. 100,000 take a few seconds.
func newWorkload(tb testing.TB, n int) *workload {
	tb.Helper()
	record := workloadRecord(tb)
	previous := bytes.Replace(record, []byte(`"amount": 128400.75`), []byte(`"amount": 119000`), 1)
	require.NotEqual(tb, record, previous)

	r := newRegistry(RegistryConfig{Addresses: loopback, Clock: clockAt(workloadEpoch)})
	ctx := context.Background()
	create := func(w Webhook) {
		if _, err := r.Create(ctx, w.Space, w); err != nil {
			tb.Fatal(err)
		}
	}
	opp := EntityOptions{Filter: workloadFilter()}
	firing := []struct {
		events []string
		opts   EntityOptions
	}{
		{[]string{workloadEvent}, opp},
		{[]string{"Opportunity.*"}, opp},
		{[]string{"*"}, EntityOptions{Filter: opp.Filter, LoadOnly: workloadLoadOnly}},
		{[]string{workloadEvent, "Opportunity.Won"}, EntityOptions{Filter: opp.Filter, OnFieldChange: []string{"value", "closing_date"}}},
		{[]string{"Account.Update", workloadEvent}, EntityOptions{Filter: opp.Filter, OnFieldChange: []string{"value.amount"}}},
	}
	for i, f := range firing {
		create(Webhook{ID: workloadUUID(9, i), Space: workloadSpace, URL: fmt.Sprintf("https://hooks.example.com/firing/%d", i),
			Events: f.events, Signature: workloadUUID(3, 1_000_000+i),
			Options: Options{Entity: map[string]EntityOptions{"Opportunity": f.opts}}})
	}

	var opps, rest []string // Opportunity's events; the others but "*"
	for _, name := range strings.Fields(catalogue) {
		switch {
		case strings.HasPrefix(name, "Opportunity."):
			opps = append(opps, name)
		case name != "*":
			rest = append(rest, name)
		}
	}
	owners := make([]string, workloadOwners)
	for i := range owners {
		owners[i] = strconv.Quote(workloadUUID(2, i))
	}
	statuses := []string{`"open"`, `["open","pending"]`, `"won"`, `["lost","won"]`}
	onChange := [][]string{{"value"}, {"status"}, {"owner_id", "closing_date"}}

	rng := rand.New(rand.NewPCG(4, uint64(n)))
	for i := range n {
		w := Webhook{ID: workloadUUID(1, i), Space: fmt.Sprintf("space-%d", i%workloadSpaces),
			URL: fmt.Sprintf("https://hooks.tenant-%d.example.com/crm/%d", i%workloadSpaces, i)}
		if rng.IntN(2) == 0 {
			w.Signature = workloadUUID(3, i)
		}
		if rng.IntN(10) == 0 {
			w.Options.ChunkSize = 10
		}
		if rng.IntN(10) == 0 {
			w.Options.SkipKeys = []string{"gmail_sync"}
		}
		filtered := rng.IntN(100) < 85
		for range 1 + rng.IntN(3) {
			name := rest[rng.IntN(len(rest))]
			if p := rng.IntN(100); filtered && p < 3 {
				name = "*"
			} else if filtered && p < 40 {
				name = opps[rng.IntN(len(opps))]
			}
			if !slices.Contains(w.Events, name) {
				w.Events = append(w.Events, name)
			}
		}
		if !filtered {
			create(w)
			continue
		}
		ids := []string{owners[rng.IntN(len(owners))]} // one owner, or a list of two or three
		for range rng.IntN(3) {
			ids = append(ids, owners[rng.IntN(len(owners))])
		}
		ownerIDs := "[" + strings.Join(ids, ",") + "]"
		if len(ids) == 1 {
			ownerIDs = ids[0]
		}
		opts := EntityOptions{Filter: map[string]json.RawMessage{
			workloadFilterFields[0]: json.RawMessage(ownerIDs),
			workloadFilterFields[1]: json.RawMessage(statuses[rng.IntN(len(statuses))]),
		}}
		if rng.IntN(100) < 20 {
			opts.OnFieldChange = onChange[rng.IntN(len(onChange))]
		}
		if rng.IntN(100) < 5 {
			opts.LoadOnly = workloadLoadOnly
		}
		w.Options.Entity = map[string]EntityOptions{}
		for _, name := range w.Events {
			entity, _, _ := strings.Cut(name, ".")
			if name == "*" {
				entity = "Opportunity"
			}
			w.Options.Entity[entity] = opts
		}
		create(w)
	}
	wl := &workload{reg: r, event: Event{Space: workloadSpace, Name: workloadEvent, Data: record, Previous: previous}}
	hooks, err := NewMatcher(r).Match(wl.event)
	require.NoError(tb, err)
	require.Len(tb, hooks, 5, "the benchmark event fires exactly the five registrations made for it")
	for i, h := range hooks {
		require.Equal(tb, workloadUUID(9, i), h.ID)
	}
	return wl
}

// BenchmarkWorkloadMatch matches the workload's event, which fires five
// registrations, against 100 to 100,000 other registrations (1.).
func BenchmarkWorkloadMatch(b *testing.B) {
	for _, n := range []int{100, 1_000, 10_000, 100_000} {
		// Built once for the -count runs, and garbage for the benchmarks
		// after, whose collections would otherwise mark it again and again.
		var w *workload
		b.Run(fmt.Sprintf("regs=%d", n), func(b *testing.B) {
			if w == nil {
				w = newWorkload(b, n)
				// Collected now, so that no collection of what building
				// it left behind runs into the timed loop: at 100,000
				// registrations one marks their 180 MB.
				runtime.GC()
			}
			m := NewMatcher(w.reg)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Match(w.event); err != nil {
					b.Fatal(err)
				}
			}
		})
		w = nil // in case the closure outlives its runs
	}
}

// BenchmarkWorkloadMatchBaselineGetMany is the floor Match is compared to:
// one read of the fields the workload's filters read.
func BenchmarkWorkloadMatchBaselineGetMany(b *testing.B) {
	record := workloadRecord(b)
	b.ReportAllocs()
	for b.Loop() {
		if res := gjson.GetManyBytes(record, workloadFilterFields...); res[1].Str != "open" {
			b.Fatalf("status = %s", res[1].Raw)
		}
	}
}

// BenchmarkWorkloadProject cuts the record down to the workload's
// load-only of five paths, into a reused buffer (2.).
func BenchmarkWorkloadProject(b *testing.B) { benchWorkloadProject(b, workloadRecord(b)) }

// BenchmarkWorkloadProjectBaseline is the same cut done the obvious way:
// decode into a map, pick the paths, encode.
func BenchmarkWorkloadProjectBaseline(b *testing.B) {
	record := workloadRecord(b)
	b.SetBytes(int64(len(record)))
	b.ReportAllocs()
	for b.Loop() {
		workloadPick(b, record, workloadLoadOnly)
	}
}

// BenchmarkWorkloadProjectSize is the projection of records of 1, 10 and
// 100 KB (6.).
func BenchmarkWorkloadProjectSize(b *testing.B) {
	for _, kb := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("size=%dKB", kb), func(b *testing.B) {
			benchWorkloadProject(b, workloadSizedRecord(b, kb<<10))
		})
	}
}

func benchWorkloadProject(b *testing.B, record []byte) {
	p, err := compileProjection("options.entity.Opportunity", EntityOptions{LoadOnly: workloadLoadOnly})
	require.NoError(b, err)
	rec := gjson.ParseBytes(record)
	ctx := context.Background()
	dst, err := p.apply(ctx, nil, "data", workloadSpace, "Opportunity", rec, nil, nil)
	require.NoError(b, err)
	require.JSONEq(b, string(workloadPick(b, record, workloadLoadOnly)), string(dst), "the baseline cuts differently")
	b.SetBytes(int64(len(record)))
	b.ReportAllocs()
	for b.Loop() {
		if dst, err = p.apply(ctx, nil, "data", workloadSpace, "Opportunity", rec, nil, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// workloadPick decodes record into maps, copies the dot paths (through
// objects only) into a new map and encodes that.
func workloadPick(tb testing.TB, record []byte, paths []string) []byte {
	var rec map[string]any
	if err := json.Unmarshal(record, &rec); err != nil {
		tb.Fatal(err)
	}
	out := map[string]any{}
	for _, p := range paths {
		src, dst := rec, out
		keys := strings.Split(p, ".")
		last := keys[len(keys)-1]
		for _, k := range keys[:len(keys)-1] {
			src, _ = src[k].(map[string]any)
			next, _ := dst[k].(map[string]any)
			if next == nil {
				next = map[string]any{}
				dst[k] = next
			}
			dst = next
		}
		if v, ok := src[last]; ok {
			dst[last] = v
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// workloadSizedRecord returns the record, compacted, brought to about
// size bytes: cut down by dropping its last fields, or grown by a longer
// contact_relations array (half the growth) and custom fields (the rest).
func workloadSizedRecord(tb testing.TB, size int) []byte {
	var compact bytes.Buffer
	require.NoError(tb, json.Compact(&compact, workloadRecord(tb)))
	var members, rels []string // "key":value; the elements of contact_relations
	gjson.ParseBytes(compact.Bytes()).ForEach(func(k, v gjson.Result) bool {
		members = append(members, k.Raw+":"+v.Raw)
		if k.Str == "contact_relations" {
			for _, e := range v.Array() {
				rels = append(rels, e.Raw)
			}
		}
		return true
	})
	total := compact.Len()
	for ; total > size; members = members[:len(members)-1] {
		total -= len(members[len(members)-1]) + 1
	}
	for i, m := range members {
		if strings.HasPrefix(m, `"contact_relations":`) && size > 2*total {
			grown := slices.Clone(rels)
			for n := len(m); n < len(m)+(size-total)/2; n += len(rels[0]) + 1 {
				grown = append(grown, rels[len(grown)%len(rels)])
			}
			members[i] = `"contact_relations":[` + strings.Join(grown, ",") + "]"
			total += len(members[i]) - len(m)
		}
	}
	note := strconv.Quote(strings.Repeat("follow up with procurement about the rollout plan; ", 2))
	for j := 0; total+len(note)+16 <= size; j++ {
		members = append(members, fmt.Sprintf(`"cf_note_%03d":%s`, j, note))
		total += len(members[len(members)-1]) + 1
	}
	out := []byte("{" + strings.Join(members, ",") + "}")
	require.Equal(tb, "open", gjson.GetBytes(out, "status").Str)
	require.InDelta(tb, size, len(out), 256)
	return out
}

// workloadHook is the registration of the pipeline and end-to-end
// benchmarks: the workload's filter, its load-only and a signature.
func workloadHook(url string, chunk int) Webhook {
	opts := EntityOptions{Filter: workloadFilter(), LoadOnly: workloadLoadOnly}
	return Webhook{Space: workloadSpace, URL: url, Events: []string{workloadEvent}, Signature: testSignature,
		Options: Options{ChunkSize: chunk, Entity: map[string]EntityOptions{"Opportunity": opts}}}
}

// BenchmarkWorkloadPipeline is everything a Dispatcher does but the
// network (3.): each op is one Dispatch of 100 events, matched, filtered,
// projected, put in chunks of chunk items, signed and handed to a
// Transport that discards them, then a Flush.
func BenchmarkWorkloadPipeline(b *testing.B) {
	record := workloadRecord(b)
	discard := transportFunc(func(context.Context, *Request) (*Response, error) {
		return &Response{StatusCode: http.StatusOK}, nil
	})
	for _, chunk := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) {
			r := newTestRegistry()
			mustCreate(b, r, workloadHook("https://hooks.example.com/crm", chunk))
			d := newTestDispatcher(b, r, Config{Transport: discard, Logger: quietLogger()})
			events := make([]Event, 100)
			for i := range events {
				events[i] = Event{Space: workloadSpace, Name: workloadEvent, Data: record}
			}
			ctx := context.Background()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Dispatch(ctx, events...); err != nil {
					b.Fatal(err)
				}
				if err := d.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			items := float64(b.N * len(events))
			b.ReportMetric(items/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/items, "allocs/item")
		})
	}
}

// BenchmarkWorkloadEndToEnd delivers to a local keep-alive receiver that
// reads and discards (4.). Each op is 256 changes, one Dispatch each (a
// CRM's API calls change one record at a time), so 256 requests of one
// item, then a Flush. "dispatcher" sends them through one registration
// with Workers and MaxInFlight 8, so at most 8 requests are in flight, all
// to the one receiver; "bare-client" posts the same bodies with the same
// headers from 8 goroutines through one http.Client with the same
// transport settings. The dispatcher's time includes Dispatch: matching,
// projection, payload and signature. "queued" is the dispatcher's delivery
// alone, of the same bodies: a Dispatcher started on a Queue that holds
// them, which claims, signs, sends and acks them, until the last attempt.
// "queued" against "bare-client" is target 4, deliveries of the same
// bodies; what builds the bodies is the pipeline's, target 3.
func BenchmarkWorkloadEndToEnd(b *testing.B) {
	const conc, perOp = 8, 256
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	newClient := func(b *testing.B) *http.Client {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = conc
		b.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	hook := workloadHook(srv.URL+"/hooks", 0)
	event := Event{Space: workloadSpace, Name: workloadEvent, Data: workloadRecord(b)}
	ctx := context.Background()
	// dispatchAll is one op of the dispatcher.
	dispatchAll := func(b *testing.B, d *Dispatcher) {
		for range perOp {
			if err := d.Dispatch(ctx, event); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}

	// The bodies and headers the Dispatcher sends, for the bare client.
	rec := &Recorder{}
	r := newTestRegistry()
	mustCreate(b, r, hook)
	dispatchAll(b, newTestDispatcher(b, r, Config{Transport: rec}))
	reqs := rec.Requests()
	require.Len(b, reqs, perOp)

	b.Run("bare-client", func(b *testing.B) {
		client := newClient(b)
		post := func(req *Request) {
			hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytes.NewReader(req.Body))
			hr.Header = req.Header.Clone()
			resp, err := client.Do(hr)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			var next atomic.Int64
			var wg sync.WaitGroup
			for range conc {
				wg.Go(func() {
					for i := next.Add(1) - 1; i < perOp; i = next.Add(1) - 1 {
						post(reqs[i])
					}
				})
			}
			wg.Wait()
		}
		b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "requests/s")
	})

	b.Run("dispatcher", func(b *testing.B) {
		tr := NewHTTPTransport(HTTPConfig{AddressPolicy: loopback, Client: newClient(b)})
		b.Cleanup(func() { tr.Close() })
		r := newTestRegistry()
		mustCreate(b, r, hook)
		var failed atomic.Int64
		d := newTestDispatcher(b, r, Config{Transport: tr, Workers: conc, MaxInFlight: conc, Logger: quietLogger(),
			RetrySchedule: []time.Duration{}, Observer: func(a Attempt) {
				if a.Err != nil {
					failed.Add(1)
				}
			}})
		b.ReportAllocs()
		for b.Loop() {
			dispatchAll(b, d)
		}
		require.Zero(b, failed.Load(), "failed attempts")
		b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "requests/s")
	})

	b.Run("queued", func(b *testing.B) {
		tr := NewHTTPTransport(HTTPConfig{AddressPolicy: loopback, Client: newClient(b)})
		b.Cleanup(func() { tr.Close() })
		r := newTestRegistry()
		w := mustCreate(b, r, hook)
		key := r.byID[spaceID{w.Space, w.ID}].key
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			q := NewMemoryQueue(QueueLimits{})
			now := time.Now()
			for _, req := range reqs {
				require.NoError(b, q.Enqueue(ctx, &Delivery{ID: newUUID(), Space: w.Space, WebhookID: w.ID, Target: key,
					Body: req.Body, Created: now, Due: now}))
			}
			var done atomic.Int64
			last := make(chan struct{})
			b.StartTimer()
			d, err := NewDispatcher(r, Config{Transport: tr, Queue: q, Workers: conc, MaxInFlight: conc, Logger: quietLogger(),
				RetrySchedule: []time.Duration{}, Observer: func(a Attempt) {
					if a.Err != nil {
						b.Error(a.Err)
					}
					if done.Add(1) == perOp {
						close(last)
					}
				}})
			require.NoError(b, err)
			<-last
			require.NoError(b, d.Close(ctx))
		}
		b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "requests/s")
	})
}

// BenchmarkWorkloadMemory reports what 100,000 registrations with the
// workload's options keep on the heap (5.): bytes and objects per
// registration, beside the size of the options' JSON. Each op builds the
// whole workload, so the default -benchtime runs it once.
func BenchmarkWorkloadMemory(b *testing.B) {
	const n = 100_000
	var bytesPer, objectsPer float64
	var w *workload
	for b.Loop() {
		w = nil // the previous op's, if any, is not part of this one's heap
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		w = newWorkload(b, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(w)
		bytesPer += float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (n + 5)
		objectsPer += float64(int64(after.HeapObjects)-int64(before.HeapObjects)) / (n + 5)
	}
	options := 0
	for _, reg := range w.reg.byID {
		o, err := json.Marshal(reg.webhook().Options) // as the host gave them
		require.NoError(b, err)
		options += len(o)
	}
	optionsPer := float64(options) / (n + 5)
	bytesPer /= float64(b.N)
	b.ReportMetric(bytesPer, "B/reg")
	b.ReportMetric(objectsPer/float64(b.N), "objects/reg")
	b.ReportMetric(optionsPer, "optionsB/reg")
	b.ReportMetric(bytesPer-optionsPer, "extraB/reg")
}
