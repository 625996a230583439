package webhook

import (
	"context"
	"time"

	"github.com/tidwall/gjson"
)

// chunk is one request to one registration: at most chunk_size of the
// items that one Dispatch call produced for it, in event order.
type chunk struct {
	call   *call
	reg    *registration
	events []*event
	due    time.Duration // after the Dispatch call: N * chunk_delay
}

// split cuts the events a Dispatch call matched for reg into chunks; chunk
// N is due N*chunk_delay after the call.
func split(c *call, reg *registration, events []*event) []*chunk {
	chunks := make([]*chunk, 0, (len(events)+reg.chunkSize-1)/reg.chunkSize)
	for n := 0; len(events) > 0; n++ {
		size := min(reg.chunkSize, len(events))
		chunks = append(chunks, &chunk{call: c, reg: reg, events: events[:size:size],
			due: time.Duration(n) * reg.chunkDelay})
		events = events[size:]
	}
	return chunks
}

// eventTimeLayout is RFC 3339 in UTC with microseconds, always written, so
// that every event_time has the same width.
const eventTimeLayout = "2006-01-02T15:04:05.000000Z"

// body appends the JSON array a receiver gets: one item per event, each
// record expanded and cut down by the registration's options.
func (ch *chunk) body(ctx context.Context, exp Expander, dst []byte) ([]byte, error) {
	reg := ch.reg
	dst = append(dst, '[')
	for i, ev := range ch.events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"webhook":`...)
		dst = append(dst, reg.payload...)
		dst = append(dst, `,"event":`...)
		dst = gjson.AppendJSONString(dst, ev.Name)
		dst = append(dst, `,"event_time":"`...)
		dst = ev.Time.UTC().AppendFormat(dst, eventTimeLayout)
		dst = append(dst, `","team_space_id":`...)
		dst = gjson.AppendJSONString(dst, ev.Space)
		dst = append(dst, `,"entity":`...)
		var err error
		if rules := reg.entities[ev.optionsKey]; rules != nil {
			dst, err = rules.proj.apply(ctx, exp, ev.Space, ev.optionsKey, ev.data, dst)
		} else {
			dst = append(dst, ev.data.Raw...)
		}
		if err != nil {
			return dst, err
		}
		dst = append(dst, `,"related_entity":`...)
		if ev.related.Exists() {
			dst, err = reg.related.apply(ctx, exp, ev.Space, ev.RelatedEntity, ev.related, dst)
			if err != nil {
				return dst, err
			}
		} else {
			dst = append(dst, "null"...)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']'), nil
}

func (ch *chunk) eventIDs() []string {
	ids := make([]string, len(ch.events))
	for i, ev := range ch.events {
		ids[i] = ev.ID
	}
	return ids
}

func (ch *chunk) failure(status int, err error) *DeliveryError {
	return &DeliveryError{WebhookID: ch.reg.hook.ID, URL: ch.reg.hook.URL,
		EventIDs: ch.eventIDs(), StatusCode: status, Err: err}
}
