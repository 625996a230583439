package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crmhook/webhook"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// entities maps the collections of the API's paths to their entities, as
// Pipeliner names them: /entities/Accounts holds Account records.
var entities = map[string]string{"Accounts": "Account", "Contacts": "Contact"}

// timeFormat is Pipeliner's: UTC, without a zone.
const timeFormat = "2006-01-02T15:04:05"

// maxBody bounds a request body of the CRM's API.
const maxBody = 1 << 20

// crm keeps the accounts and contacts of every team space in memory,
// serves them over a REST API of Pipeliner's shape, and hands every change
// it makes to the Dispatcher. It is the Dispatcher's Expander too
// (expand.go).
type crm struct {
	d   *webhook.Dispatcher // set before the API serves
	log *slog.Logger

	// writes serializes the writes with their Dispatch calls, so that
	// events leave in the order of the writes and a write whose events
	// Dispatch refuses can be undone. A service on a database gets the
	// same from a transaction and Dispatcher.DispatchTo.
	writes sync.Mutex
	// mu guards records and seq. It is never held across Dispatch, which
	// calls Expand, which reads.
	mu      sync.RWMutex
	records map[recordKey]record
	seq     int
}

type recordKey struct{ space, entity, id string }

// record is a stored record: a JSON object with id, created and modified.
type record struct {
	seq  int // creation order, for lists
	data []byte
}

func newCRM(log *slog.Logger) *crm {
	return &crm{log: log, records: map[recordKey]record{}}
}

// spaceOf returns the team space a request names in its path. A real
// service checks here that the caller may use that space (or takes the
// space from the caller's token), and refuses the request otherwise; the
// webhook handler's HandlerConfig.Space is where it does the same for
// /entities/Webhooks.
func spaceOf(r *http.Request) string { return r.PathValue("space") }

// routes adds the API of every entity to mux: create and list at
// .../entities/Accounts, get, update and delete at .../Accounts/{id}.
func (c *crm) routes(mux *http.ServeMux) {
	for collection, entity := range entities {
		path := "/api/v100/rest/spaces/{space}/entities/" + collection
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			answer(w, http.StatusOK, jsonArray(c.list(spaceOf(r), entity, nil)))
		})
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) { c.create(w, r, entity) })
		mux.HandleFunc("GET "+path+"/{id}", func(w http.ResponseWriter, r *http.Request) {
			if rec, ok := c.get(spaceOf(r), entity, r.PathValue("id")); ok {
				answer(w, http.StatusOK, rec)
				return
			}
			fail(w, http.StatusNotFound, "no %s has the id %q", entity, r.PathValue("id"))
		})
		mux.HandleFunc("PATCH "+path+"/{id}", func(w http.ResponseWriter, r *http.Request) { c.update(w, r, entity) })
		mux.HandleFunc("DELETE "+path+"/{id}", func(w http.ResponseWriter, r *http.Request) { c.delete(w, r, entity) })
	}
}

// create stores a new record, with the id the body gives or a new one,
// and fires <Entity>.Create.
func (c *crm) create(w http.ResponseWriter, r *http.Request, entity string) {
	space := spaceOf(r)
	body, ok := readObject(w, r)
	if !ok {
		return
	}
	id := newID()
	if given := gjson.GetBytes(body, "id"); given.Exists() {
		// A client may choose the id, as Pipeliner's clients may; it is a
		// segment of the record's path.
		if id = given.String(); given.Type != gjson.String || !isAPIName(strings.ReplaceAll(id, "-", "")) {
			fail(w, http.StatusUnprocessableEntity, "id: %s is not letters, digits, - and _", given.Raw)
			return
		}
	}
	now := time.Now().UTC().Format(timeFormat)
	rec, err := setFields(body, "id", id, "created", now, "modified", now)
	if err != nil {
		c.internal(w, err)
		return
	}
	c.writes.Lock()
	defer c.writes.Unlock()
	if _, taken := c.get(space, entity, id); taken {
		fail(w, http.StatusConflict, "a %s with the id %q exists", entity, id)
		return
	}
	if !c.checkRelations(w, space, entity, rec) {
		return
	}
	c.put(space, entity, id, rec)
	err = c.commit(r.Context(), func() { c.remove(space, entity, id) },
		webhook.Event{Space: space, Name: entity + ".Create", Data: rec})
	if err != nil {
		c.dispatchFailed(w, err)
		return
	}
	answer(w, http.StatusCreated, rec)
}

// update writes the fields the body gives into the record, as Pipeliner's
// PATCH does (a field it does not give keeps its value, null clears one),
// and fires <Entity>.Update with the record before as Previous, so that
// on-field-change can compare them; and <Entity>.OwnerChanged when
// owner_id changed.
func (c *crm) update(w http.ResponseWriter, r *http.Request, entity string) {
	space, id := spaceOf(r), r.PathValue("id")
	body, ok := readObject(w, r)
	if !ok {
		return
	}
	c.writes.Lock()
	defer c.writes.Unlock()
	before, ok := c.get(space, entity, id)
	if !ok {
		fail(w, http.StatusNotFound, "no %s has the id %q", entity, id)
		return
	}
	after, err := merge(before, body)
	if err != nil {
		c.internal(w, err)
		return
	}
	if !c.checkRelations(w, space, entity, after) {
		return
	}
	c.put(space, entity, id, after)
	events := []webhook.Event{{Space: space, Name: entity + ".Update", Data: after, Previous: before}}
	if gjson.GetBytes(before, "owner_id").Raw != gjson.GetBytes(after, "owner_id").Raw {
		events = append(events, webhook.Event{Space: space, Name: entity + ".OwnerChanged", Data: after, Previous: before})
	}
	if err := c.commit(r.Context(), func() { c.put(space, entity, id, before) }, events...); err != nil {
		c.dispatchFailed(w, err)
		return
	}
	answer(w, http.StatusOK, after)
}

// delete removes the record and fires <Entity>.Delete with it. The
// contacts of a deleted account keep its account_id; the Expander leaves
// out what it no longer finds.
func (c *crm) delete(w http.ResponseWriter, r *http.Request, entity string) {
	space, id := spaceOf(r), r.PathValue("id")
	c.writes.Lock()
	defer c.writes.Unlock()
	rec, ok := c.get(space, entity, id)
	if !ok {
		fail(w, http.StatusNotFound, "no %s has the id %q", entity, id)
		return
	}
	removed := c.remove(space, entity, id)
	err := c.commit(r.Context(), func() { c.restore(space, entity, id, removed) },
		webhook.Event{Space: space, Name: entity + ".Delete", Data: rec})
	if err != nil {
		c.dispatchFailed(w, err)
		return
	}
	quoted, _ := json.Marshal(id)
	answer(w, http.StatusOK, quoted)
}

// commit hands the events of a write, applied already, to the Dispatcher
// with the request's context: the context carries the request's
// Webhook-Skip-Key (webhook.CarrySkipKey put it there), which Dispatch
// gives to every event, so no handler reads the header. If Dispatch
// refuses the events (it then delivers none of them), undo reverts the
// write, so that no change goes unannounced. It requires c.writes held.
func (c *crm) commit(ctx context.Context, undo func(), events ...webhook.Event) error {
	err := c.d.Dispatch(ctx, events...)
	if err != nil {
		undo()
	}
	return err
}

// checkRelations answers 422 and returns false when a Contact's
// account_id names no account of its space.
func (c *crm) checkRelations(w http.ResponseWriter, space, entity string, rec []byte) bool {
	if entity != "Contact" {
		return true
	}
	id := gjson.GetBytes(rec, "account_id")
	if id.Type == gjson.Null {
		return true
	}
	if _, ok := c.get(space, "Account", id.String()); !ok {
		fail(w, http.StatusUnprocessableEntity, "account_id: no Account has the id %s", id.Raw)
		return false
	}
	return true
}

func (c *crm) get(space, entity, id string) ([]byte, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rec, ok := c.records[recordKey{space, entity, id}]
	return rec.data, ok
}

// list returns the records of an entity in a space that keep (nil: all)
// accepts, in creation order.
func (c *crm) list(space, entity string, keep func(rec []byte) bool) [][]byte {
	var recs []record
	c.mu.RLock()
	for k, rec := range c.records {
		if k.space == space && k.entity == entity && (keep == nil || keep(rec.data)) {
			recs = append(recs, rec)
		}
	}
	c.mu.RUnlock()
	slices.SortFunc(recs, func(a, b record) int { return cmp.Compare(a.seq, b.seq) })
	out := make([][]byte, len(recs))
	for i, rec := range recs {
		out[i] = rec.data
	}
	return out
}

// put stores data as the record, keeping its place in lists.
func (c *crm) put(space, entity, id string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := recordKey{space, entity, id}
	rec, ok := c.records[k]
	if !ok {
		c.seq++
		rec.seq = c.seq
	}
	rec.data = data
	c.records[k] = rec
}

// remove removes a record and returns it, for restore.
func (c *crm) remove(space, entity, id string) record {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := recordKey{space, entity, id}
	rec := c.records[k]
	delete(c.records, k)
	return rec
}

// restore puts back a record that remove removed, in its place in lists.
func (c *crm) restore(space, entity, id string, rec record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records[recordKey{space, entity, id}] = rec
}

// readObject reads a request body that must be a JSON object whose field
// names are API names (letters, digits, _), so that each one is a plain
// sjson path; it answers the error and returns false otherwise.
func readObject(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
		fail(w, http.StatusRequestEntityTooLarge, "the body is over %d bytes", maxBody)
		return nil, false
	}
	if err != nil || !json.Valid(body) || !gjson.ParseBytes(body).IsObject() {
		fail(w, http.StatusBadRequest, "the body is not a JSON object")
		return nil, false
	}
	bad := ""
	gjson.ParseBytes(body).ForEach(func(k, _ gjson.Result) bool {
		if !isAPIName(k.String()) {
			bad = k.Raw
		}
		return bad == ""
	})
	if bad != "" {
		fail(w, http.StatusUnprocessableEntity, "%s is not a field name", bad)
		return nil, false
	}
	return body, true
}

func isAPIName(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == ""
}

// merge writes the fields of patch into rec but id and created, which are
// the CRM's, and stamps modified.
func merge(rec, patch []byte) ([]byte, error) {
	var err error
	gjson.ParseBytes(patch).ForEach(func(k, v gjson.Result) bool {
		if name := k.String(); name != "id" && name != "created" && name != "modified" {
			rec, err = sjson.SetRawBytes(rec, name, []byte(v.Raw))
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return setFields(rec, "modified", time.Now().UTC().Format(timeFormat))
}

// setFields sets string fields of a JSON object: name, value, name,
// value, ...
func setFields(rec []byte, nameValues ...string) ([]byte, error) {
	var err error
	for i := 0; i+1 < len(nameValues) && err == nil; i += 2 {
		rec, err = sjson.SetBytes(rec, nameValues[i], nameValues[i+1])
	}
	return rec, err
}

// dispatchFailed answers a write whose events Dispatch refused; the write
// was undone.
func (c *crm) dispatchFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, webhook.ErrTooLarge):
		fail(w, http.StatusRequestEntityTooLarge, "%v", err)
	case errors.Is(err, webhook.ErrInvalid):
		fail(w, http.StatusUnprocessableEntity, "%v", err)
	case errors.Is(err, webhook.ErrQueueFull), errors.Is(err, webhook.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		fail(w, http.StatusServiceUnavailable, "not saved, try again later: %v", err)
	default:
		c.internal(w, err)
	}
}

func (c *crm) internal(w http.ResponseWriter, err error) {
	c.log.Error("crm: internal error", "err", err)
	fail(w, http.StatusInternalServerError, "internal error")
}

// answer writes Pipeliner's answer: {"success":true,"data":<data>}.
func answer(w http.ResponseWriter, status int, data []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{\"success\":true,\"data\":%s}\n", data)
}

// errorNames are the names and codes of Pipeliner's error JSON, as the
// webhook handler uses them.
var errorNames = map[int]struct {
	name string
	code int
}{
	http.StatusBadRequest:            {"ERROR_INVALID_JSON", 118},
	http.StatusNotFound:              {"ERROR_ENTITY_NOT_FOUND", 40001},
	http.StatusConflict:              {"ERROR_CONFLICT", 109},
	http.StatusRequestEntityTooLarge: {"ERROR_REQUEST_TOO_LARGE", 113},
	http.StatusUnprocessableEntity:   {"ERROR_ENTITY_VALIDATION", 40000},
	http.StatusInternalServerError:   {"ERROR_INTERNAL", 100},
	http.StatusServiceUnavailable:    {"ERROR_SERVICE_UNAVAILABLE", 103},
}

// fail writes Pipeliner's error JSON.
func fail(w http.ResponseWriter, status int, format string, args ...any) {
	e := errorNames[status]
	body, _ := json.Marshal(map[string]any{"success": false, "http_status": status,
		"code": e.code, "name": e.name, "message": fmt.Sprintf(format, args...)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

func jsonArray(recs [][]byte) []byte {
	out := []byte{'['}
	for i, rec := range recs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, rec...)
	}
	return append(out, ']')
}

// newID returns a random UUID, as Pipeliner's ids are.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
