package webhook

import (
	"context"
	"fmt"
	"time"

	"github.com/tidwall/gjson"
)

// deliveries builds what one Dispatch call sends to reg: the items of its
// events, cut into bodies of at most chunk_size items and maxBody bytes.
// Body N is due N*chunk_delay after now, or as late as time allows (see
// chunkWait). The items are built in buf, which it returns, grown, for the
// next call: each body is then one allocation of its exact size, however
// many items it took to build.
func deliveries(ctx context.Context, exp Expander, reg *registration, events []*event, now time.Time, maxBody int, buf []byte) ([]*Delivery, []byte, error) {
	var (
		ds   []*Delivery
		body = buf[:0] // items, each after a ',' that becomes '[' for the first
		ids  []string
	)
	// flush makes a delivery of the first n bytes of body and keeps the rest.
	flush := func(n int) {
		b := make([]byte, n+1)
		copy(b, body[:n])
		b[0], b[n] = '[', ']'
		ds = append(ds, &Delivery{ID: newUUID(), Space: reg.hook.Space, WebhookID: reg.hook.ID, Target: reg.key, EventIDs: ids,
			Body: b, Created: now, Due: now.Add(chunkWait(len(ds), reg.chunkDelay))})
		body, ids = body[:copy(body, body[n:])], nil
	}
	for _, ev := range events {
		if len(ids) == reg.chunkSize {
			flush(len(body))
		}
		mark := len(body)
		var err error
		body, err = appendItem(ctx, exp, reg, ev, append(body, ','))
		if err != nil {
			return nil, body, fmt.Errorf("webhook: event %d (%s) for webhook %s: %w", ev.index, ev.ID, reg.hook.ID, err)
		}
		if item := len(body) - mark - 1; item+2 > maxBody {
			return nil, body, fmt.Errorf("webhook: event %d (%s) for webhook %s: its item is %d bytes, more than the %d a request body may have: %w",
				ev.index, ev.ID, reg.hook.ID, item, maxBody, ErrTooLarge)
		}
		if len(body)+1 > maxBody && len(ids) > 0 {
			// The item does not fit beside the others: it opens the next body.
			flush(mark)
		}
		ids = append(ids, ev.ID)
	}
	if len(ids) > 0 {
		flush(len(body))
	}
	return ds, body, nil
}

// eventTimeLayout is RFC 3339 in UTC with microseconds, always written, so
// that every event_time has the same width.
const eventTimeLayout = "2006-01-02T15:04:05.000000Z"

// appendItem appends the item a receiver gets for ev: the record expanded
// and cut down by reg's options.
func appendItem(ctx context.Context, exp Expander, reg *registration, ev *event, dst []byte) ([]byte, error) {
	dst = append(dst, `{"webhook":`...)
	dst = append(dst, reg.payloadJSON()...)
	dst = append(dst, `,"event":`...)
	dst = gjson.AppendJSONString(dst, ev.Name)
	dst = append(dst, `,"event_time":"`...)
	dst = ev.Time.UTC().AppendFormat(dst, eventTimeLayout)
	dst = append(dst, `","team_space_id":`...)
	dst = gjson.AppendJSONString(dst, ev.Space)
	dst = append(dst, `,"entity":`...)
	var err error
	if rules := reg.entities[ev.optionsKey]; rules != nil {
		dst, err = rules.proj.apply(ctx, exp, "data", ev.Space, ev.optionsKey, ev.data, ev.spans, dst)
	} else {
		dst = append(dst, ev.data.Raw...)
	}
	if err != nil {
		return dst, err
	}
	dst = append(dst, `,"related_entity":`...)
	if ev.related.Exists() {
		dst, err = reg.related.apply(ctx, exp, "related", ev.Space, ev.RelatedEntity, ev.related, nil, dst)
		if err != nil {
			return dst, err
		}
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, '}'), nil
}
