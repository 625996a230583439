package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Transport sends one webhook request. A Dispatcher calls it from several
// goroutines at once, so implementations must be safe for simultaneous use.
// A Transport reports what the receiver answered; the Dispatcher decides
// what counts as delivered (a 2xx status).
type Transport interface {
	Send(ctx context.Context, req *Request) (*Response, error)
}

// Request is one POST to a receiver, as a Transport gets it: the headers
// and body are final and signed. A Transport must not modify it.
type Request struct {
	URL         string
	Header      http.Header // Content-Type, and WebHook-Signature when the registration is signed
	Body        []byte      // the JSON array of items
	InsecureSSL bool        // the receiver's TLS certificate is not to be verified
	WebhookID   string      // the registration it goes to
	EventIDs    []string    // the events it carries, in order
}

// Response is what a receiver answered.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte // its first 64 KiB, for diagnostics
}

// maxResponseBody bounds what is read of an answer: receivers are to
// answer quickly and briefly, and a large answer must not cost memory.
const maxResponseBody = 64 << 10

// defaultTimeout bounds a request of the transport's own client, within
// the 15 to 30 seconds Standard Webhooks recommends.
const defaultTimeout = 30 * time.Second

// HTTPConfig configures an HTTPTransport. The zero value is the default.
type HTTPConfig struct {
	// Client sends the requests. nil means a client of the transport's own
	// with a 30 second timeout. Its Timeout and Jar are kept; redirects are
	// never followed, since a 3xx is a failed delivery. When its Transport
	// is an *http.Transport (or nil, meaning http.DefaultTransport), the
	// HTTPTransport sends through two clones of it, one that verifies TLS
	// certificates and one for insecure_ssl registrations, and leaves the
	// original alone. Any other RoundTripper is used as it is, and then
	// decides about certificates itself.
	Client *http.Client
}

// HTTPTransport is the default Transport: it POSTs each request over HTTP.
// Certificates are verified unless the registration sets insecure_ssl. An
// HTTPTransport is safe for simultaneous use by multiple goroutines.
type HTTPTransport struct {
	secure, insecure *http.Client
	owned            []*http.Transport // the clones it made, to close
}

// NewHTTPTransport returns an HTTPTransport configured by cfg.
func NewHTTPTransport(cfg HTTPConfig) *HTTPTransport {
	base := cfg.Client
	if base == nil {
		base = &http.Client{Timeout: defaultTimeout}
	}
	t := &HTTPTransport{}
	client := func(insecure bool) *http.Client {
		c := *base
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		rt := c.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		if ht, ok := rt.(*http.Transport); ok {
			clone := ht.Clone()
			if clone.TLSClientConfig == nil {
				clone.TLSClientConfig = &tls.Config{}
			}
			clone.TLSClientConfig.InsecureSkipVerify = insecure
			t.owned = append(t.owned, clone)
			rt = clone
		}
		c.Transport = rt
		return &c
	}
	t.secure, t.insecure = client(false), client(true)
	return t
}

// Send POSTs req and returns the receiver's answer, whatever its status.
func (t *HTTPTransport) Send(ctx context.Context, req *Request) (*Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return nil, err
	}
	hreq.Header = req.Header.Clone()
	client := t.secure
	if req.InsecureSSL {
		client = t.insecure
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return nil, err
	}
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// Close closes the idle connections of the transports it created; it
// never touches the caller's client.
func (t *HTTPTransport) Close() error {
	for _, ht := range t.owned {
		ht.CloseIdleConnections()
	}
	return nil
}

// Recorder is a Transport that keeps every request in memory and answers
// 200, so that a host's tests can check what its code sends without a
// network. The zero value is ready to use. A Recorder is safe for
// simultaneous use by multiple goroutines.
type Recorder struct {
	mu   sync.Mutex
	reqs []*Request
}

// Send records a copy of req.
func (r *Recorder) Send(ctx context.Context, req *Request) (*Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, req.clone())
	r.mu.Unlock()
	return &Response{StatusCode: http.StatusOK, Header: http.Header{}}, nil
}

// Requests returns copies of the requests recorded so far, in the order
// they were sent.
func (r *Recorder) Requests() []*Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Request, len(r.reqs))
	for i, req := range r.reqs {
		out[i] = req.clone()
	}
	return out
}

func (req *Request) clone() *Request {
	c := *req
	c.Header = req.Header.Clone()
	c.Body = bytes.Clone(req.Body)
	c.EventIDs = slices.Clone(req.EventIDs)
	return &c
}
