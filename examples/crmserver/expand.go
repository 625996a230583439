package main

import (
	"context"
	"encoding/json"

	"github.com/crmhook/webhook"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Expand is the CRM's webhook.Expander: for a registration whose options
// say "expand", the Dispatcher asks it, during Dispatch, to load the
// relations the paths name into the record, and sends what it returns
// (load-only then applies to it). Only the CRM has the related records.
//
// It writes each relation into the record with sjson, at the path that
// names it. It knows two: a Contact's "account" (the Account its
// account_id names) and an Account's "contacts" (the Contacts whose
// account_id names it). A path it does not know ("tasks", or a nested one
// like "account.owner") is left out: the record goes without it, as a
// load-only path the record lacks is left out, and an account that is gone
// too. Returning an error instead would make Dispatch refuse the write's
// events, and the write with them.
//
// Dispatch may run from several requests at once; Expand only reads, under
// c.mu, so it is safe for simultaneous use, as an Expander must be.
func (c *crm) Expand(ctx context.Context, req webhook.ExpandRequest) (json.RawMessage, error) {
	rec := []byte(req.Record) // the Expander's own copy
	for _, path := range req.Paths {
		related, ok := c.related(req.Space, req.Entity, path, rec)
		if !ok {
			continue
		}
		var err error
		if rec, err = sjson.SetRawBytes(rec, path, related); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// related returns the JSON of the relation path of rec, an entity's
// record, and whether the CRM knows that relation and found its records.
func (c *crm) related(space, entity, path string, rec []byte) ([]byte, bool) {
	switch entity + "." + path {
	case "Contact.account":
		return c.get(space, "Account", gjson.GetBytes(rec, "account_id").String())
	case "Account.contacts":
		id := gjson.GetBytes(rec, "id").String()
		return jsonArray(c.list(space, "Contact", func(contact []byte) bool {
			return gjson.GetBytes(contact, "account_id").String() == id
		})), true
	}
	return nil, false
}
