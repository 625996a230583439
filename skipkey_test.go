package webhook

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCarrySkipKeyReachesDispatchWithoutPlumbing(t *testing.T) {
	rcv := newReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: rcv.URL + "/sync", Events: []string{"Account.*"}, Options: Options{SkipKeys: []string{"gmail_sync"}}})
	mustCreate(t, r, Webhook{URL: rcv.URL + "/all", Events: []string{"Account.*"}})
	d := newTestDispatcher(t, r, Config{})

	// The host's own API: it knows nothing of skip keys, and hands its
	// request's context to Dispatch.
	api := CarrySkipKey(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var rec json.RawMessage
		if err := json.NewDecoder(req.Body).Decode(&rec); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := d.Dispatch(req.Context(), Event{Name: "Account.Create", Data: rec},
			Event{Name: "Account.Update", Data: rec, SkipKey: "own-key"}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	call := func(skipKey string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/accounts", strings.NewReader(`{"id":"a1"}`))
		if skipKey != "" {
			req.Header.Set(HeaderSkipKey, skipKey)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
		require.NoError(t, d.Flush(t.Context()))
	}
	requests := func() map[string][]string {
		got := map[string][]string{}
		for _, req := range rcv.drain() {
			for _, it := range decodeItems(t, req.Body) {
				got[req.Path] = append(got[req.Path], it.Event)
			}
		}
		return got
	}

	call("gmail_sync")
	require.Equal(t, map[string][]string{
		"/all":  {"Account.Create", "Account.Update"},
		"/sync": {"Account.Update"}, // the event's own key wins over the request's
	}, requests())
	call("")
	require.Equal(t, map[string][]string{
		"/all":  {"Account.Create", "Account.Update"},
		"/sync": {"Account.Create", "Account.Update"},
	}, requests())
}

func TestSkipKeyFromAContextWithoutOne(t *testing.T) {
	require.Empty(t, SkipKeyFromContext(t.Context()))
	require.Equal(t, "k", SkipKeyFromContext(ContextWithSkipKey(t.Context(), "k")))
}
