package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// tlsCase dispatches one event to a TLS receiver whose certificate no
// public authority signed, and reports what arrived and what failed.
func tlsCase(t *testing.T, cfg HTTPConfig, insecure bool) (delivered int, failed []*DeliveryError) {
	t.Helper()
	rcv := newTLSReceiver(t)
	r := NewRegistry()
	mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"*"}, InsecureSSL: insecure})
	tr := NewHTTPTransport(cfg)
	t.Cleanup(func() { tr.Close() })
	var got failures
	d := newTestDispatcher(t, r, Config{Transport: tr, OnFailure: got.add, Logger: quietLogger()})
	dispatch(t, d, Event{Name: "Account.Create", Data: account})
	return len(rcv.drain()), got.list()
}

func requireCertificateFailure(t *testing.T, failed []*DeliveryError) {
	t.Helper()
	require.Len(t, failed, 1)
	var cerr *tls.CertificateVerificationError
	require.ErrorAs(t, failed[0], &cerr)
}

func TestHTTPTransportVerifiesCertificatesUnlessInsecureSSL(t *testing.T) {
	t.Run("a registration without insecure_ssl is refused an unknown certificate", func(t *testing.T) {
		n, failed := tlsCase(t, HTTPConfig{}, false)
		require.Zero(t, n)
		requireCertificateFailure(t, failed)
	})
	t.Run("a registration with insecure_ssl is delivered", func(t *testing.T) {
		n, failed := tlsCase(t, HTTPConfig{}, true)
		require.Equal(t, 1, n)
		require.Empty(t, failed)
	})
}

func TestHTTPTransportWithTheHostsClient(t *testing.T) {
	t.Run("a client that trusts the receiver's authority delivers, verifying", func(t *testing.T) {
		rcv := newTLSReceiver(t)
		host := rcv.Client() // trusts the test certificate, and only it
		r := NewRegistry()
		mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"*"}})
		tr := NewHTTPTransport(HTTPConfig{Client: host})
		d, err := NewDispatcher(r, Config{Transport: tr})
		require.NoError(t, err)
		dispatch(t, d, Event{Name: "Account.Create", Data: account})
		require.Len(t, rcv.drain(), 1)
		require.NoError(t, d.Close(context.Background()))
		require.NoError(t, tr.Close())

		// The host's client is untouched, and still works.
		require.False(t, host.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify)
		resp, err := host.Get(rcv.URL)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	})
	t.Run("a client that skips verification still verifies registrations without insecure_ssl", func(t *testing.T) {
		host := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		n, failed := tlsCase(t, HTTPConfig{Client: host}, false)
		require.Zero(t, n)
		requireCertificateFailure(t, failed)
		require.True(t, host.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify, "the host's transport is not modified")
	})
	t.Run("insecure_ssl works with the host's client too", func(t *testing.T) {
		n, failed := tlsCase(t, HTTPConfig{Client: &http.Client{}}, true)
		require.Equal(t, 1, n)
		require.Empty(t, failed)
	})
	t.Run("another RoundTripper is used as it is", func(t *testing.T) {
		var calls atomic.Int32
		rcv := newReceiver(t)
		host := &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			calls.Add(1)
			return http.DefaultTransport.RoundTrip(req)
		})}
		r := NewRegistry()
		mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"*"}})
		d := newTestDispatcher(t, r, Config{Transport: NewHTTPTransport(HTTPConfig{Client: host})})
		dispatch(t, d, Event{Name: "Account.Create", Data: account})
		require.Len(t, rcv.drain(), 1)
		require.Equal(t, int32(1), calls.Load())
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// accountService stands for a host's code: it stores an account and tells
// its webhook dispatcher.
type accountService struct {
	hooks *Dispatcher
}

func (s *accountService) CreateAccount(ctx context.Context, space, name string) error {
	rec, err := json.Marshal(map[string]string{"id": "acc-1", "name": name})
	if err != nil {
		return err
	}
	return s.hooks.Dispatch(ctx, Event{Space: space, Name: "Account.Create", Data: rec})
}

func TestRecorderLetsAHostTestWhatItSends(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	hook := mustCreate(t, r, Webhook{Space: "acme", URL: "https://crm-sync.example/hooks", Events: []string{"Account.Create"},
		Signature: testSignature, Options: Options{Entity: map[string]EntityOptions{"Account": {LoadOnly: []string{"name"}}}}})
	var rec Recorder
	d := newTestDispatcher(t, r, Config{Transport: &rec})

	svc := &accountService{hooks: d}
	require.NoError(t, svc.CreateAccount(ctx, "acme", "Acme Corp"))
	require.NoError(t, svc.CreateAccount(ctx, "other-tenant", "Nope"))
	require.NoError(t, d.Flush(ctx))

	reqs := rec.Requests()
	require.Len(t, reqs, 1)
	req := reqs[0]
	require.Equal(t, "https://crm-sync.example/hooks", req.URL)
	require.Equal(t, hook.ID, req.WebhookID)
	require.Equal(t, "application/json", req.Header.Get("Content-Type"))
	require.NoError(t, VerifySignature(testSignature, req.Body, req.Header.Get(HeaderSignature)))
	items := decodeItems(t, req.Body)
	require.Len(t, items, 1)
	require.Equal(t, "acme", items[0].TeamSpaceID)
	require.JSONEq(t, `{"name":"Acme Corp"}`, string(items[0].Entity))

	// What the Recorder returns is a copy: changing it changes nothing.
	req.Body[0] = 'X'
	require.Equal(t, byte('['), rec.Requests()[0].Body[0])
}
