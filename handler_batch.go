package webhook

import (
	"encoding/json"
	"net/http"
)

// The batch calls, batch-delete and batch-modify. Their rollback-method
// (pipeliner/reference.md) is 0, the default, for all or nothing: if any
// item fails none is applied and the answer is that item's error, with
// its status; or 1 for item by item: the others are applied, and each
// failure is an Error object in its place in data.
//
// With 0, which item's error is the answer when several would fail: an
// item refused before anything is applied (a body of the wrong types, an
// id that is not a UUID) comes first, the first of them in order; else
// the first that Registry.Apply refuses.

// MaxBatchItems is the most items a batch-delete or batch-modify takes, as
// many as a page of a list: each item is a change of its own.
const MaxBatchItems = maxPageSize

// batchItem is one item of a batch: its Change, or why it was refused
// before anything was applied.
type batchItem struct {
	change Change
	err    *apiError
}

func (c *restCall) batchDelete() {
	var ids []string
	atomic, ok := readBatch(c, &ids, "ids")
	if !ok {
		return
	}
	items := make([]batchItem, len(ids))
	c.ids = append(c.ids, ids...)
	for i, id := range ids {
		if isUUID(id) {
			items[i].change = Change{ID: id, Delete: true}
		} else {
			items[i].err = entityNotFound(id) // not an id the Registry makes
		}
	}
	c.applyBatch(items, atomic)
}

func (c *restCall) batchModify() {
	var bodies []json.RawMessage
	atomic, ok := readBatch(c, &bodies, "objects")
	if !ok {
		return
	}
	items := make([]batchItem, len(bodies))
	for i, body := range bodies {
		id, idErr := batchID(body)
		c.ids = append(c.ids, id)
		p, typeErrs, err := decodePatchBody(body)
		if err != nil {
			c.fail(newError(errBadJSON, "item %d of the body is not a JSON object", i))
			return
		}
		c.keepSecrets(p)
		switch {
		case idErr != nil:
			items[i].err = c.invalid("", append(FieldErrors{idErr}, typeErrs...), nil)
		case id != "" && !isUUID(id):
			items[i].err = entityNotFound(id)
		case len(typeErrs) > 0 && id == "":
			items[i].err = c.invalid("", typeErrs, c.h.validate(newWebhook(p)))
		case len(typeErrs) > 0:
			items[i].err = c.invalidUpdate(id, p, typeErrs)
		default:
			items[i].change = Change{ID: id, Patch: p}
		}
	}
	c.applyBatch(items, atomic)
}

// batchID reads the id of a batch-modify item: "" (absent, null or empty)
// creates a registration, any other string updates the one it names.
func batchID(body json.RawMessage) (string, *FieldError) {
	var item struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &item) != nil || item.ID == nil || isNull(item.ID) {
		return "", nil
	}
	var id string
	if json.Unmarshal(item.ID, &id) != nil {
		return "", invalid("id", "want a string, the UUID of the Webhook to update")
	}
	return id, nil
}

// readBatch reads a batch call's rollback-method (atomic unless 1) and
// its body, a JSON list of at most MaxBatchItems what, into list; it
// answers the call itself when either is wrong.
func readBatch[T any](c *restCall, list *[]T, what string) (atomic, ok bool) {
	n, e := c.intParam("rollback-method", 0, 0, 1)
	var b []byte
	if e == nil {
		b, e = c.readBody()
	}
	switch {
	case e != nil:
	case json.Unmarshal(b, list) != nil:
		e = newError(errBadJSON, "the body must be a list of %s", what)
	case len(*list) > MaxBatchItems:
		e = newError(errBadJSON, "a batch holds at most %d items, not %d", MaxBatchItems, len(*list))
	}
	if e != nil {
		c.fail(e)
		return false, false
	}
	return n == 0, true
}

// applyBatch applies the items' changes and answers with one entry per
// item: the registration's id, or its error.
func (c *restCall) applyBatch(items []batchItem, atomic bool) {
	var changes []Change
	var at []int // the item of each change
	for i, it := range items {
		switch {
		case it.err == nil:
			changes, at = append(changes, it.change), append(at, i)
		case atomic:
			c.fail(it.err)
			return
		}
	}
	if len(changes) > 0 {
		results, err := c.h.reg.Apply(c.r.Context(), c.space, changes, atomic)
		if err != nil {
			c.fail(c.registryError(err, failedID(changes, results)))
			return
		}
		for j, res := range results {
			if res.Err != nil {
				items[at[j]].err = c.registryError(res.Err, changes[j].ID)
			} else {
				items[at[j]].change.ID = res.Webhook.ID
			}
		}
	}
	data := make([]any, len(items))
	for i, it := range items {
		data[i] = it.change.ID
		if it.err != nil {
			data[i] = c.report(it.err)
		}
	}
	c.answer(http.StatusOK, answer{Success: true, Data: data})
}

// failedID is the id of the change an all-or-nothing Apply failed at, ""
// when it is a new registration or Apply did not say which.
func failedID(changes []Change, results []ChangeResult) string {
	for j, res := range results {
		if res.Err != nil && j < len(changes) {
			return changes[j].ID
		}
	}
	return ""
}
