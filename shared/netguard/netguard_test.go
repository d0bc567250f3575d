package netguard_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/netguard"
)

// resolver answers from a fixed table, like a DNS server we control.
func resolver(table map[string]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		a, ok := table[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	prod := &netguard.Guard{LookupIP: resolver(map[string]string{
		"hooks.example.com": "93.184.216.34", "internal.example.com": "10.1.2.3", "meta.example.com": "169.254.169.254",
		"v6.example.com": "2606:4700::1111", "nat.example.com": "100.64.1.1",
	})}
	dev := &netguard.Guard{AllowInsecure: true, LookupIP: prod.LookupIP}
	for _, tc := range []struct {
		url  string
		dev  bool
		want bool
	}{
		{"https://hooks.example.com/lull", false, true},
		{"https://v6.example.com/x", false, true},
		{"http://hooks.example.com/lull", false, false}, // not https in production
		{"https://127.0.0.1/x", false, false},
		{"https://10.0.0.1/x", false, false},
		{"https://169.254.169.254/latest/meta-data", false, false},
		{"https://[::1]:8443/x", false, false},
		{"https://[fd00:ec2::254]/x", false, false},
		{"https://internal.example.com/x", false, false}, // resolves to a private address
		{"https://meta.example.com/x", false, false},
		{"https://nat.example.com/x", false, false},
		{"https://localhost/x", false, false},
		{"https://224.0.0.1/x", false, false},
		{"https://0.0.0.0/x", false, false},
		{"https://user:pw@hooks.example.com/x", false, false},
		{"https://nowhere.example.com/x", false, false}, // does not resolve
		{"ftp://hooks.example.com/x", false, false},
		{"/relative", false, false},
		{"http://127.0.0.1:9000/hook", true, true}, // the dev stack allows local receivers
		{"http://10.0.0.1/hook", true, true},
	} {
		g := prod
		if tc.dev {
			g = dev
		}
		err := g.CheckURL(context.Background(), tc.url)
		if (err == nil) != tc.want {
			t.Errorf("CheckURL(%q, dev=%v) = %v, want allowed=%v", tc.url, tc.dev, err, tc.want)
		}
		if err != nil {
			var le *lull.Error
			if !errors.As(err, &le) || le.Code != lull.EINVALID || le.Param != "url" || le.Message == "" {
				t.Errorf("CheckURL(%q) error %#v is not a clear invalid-url error", tc.url, err)
			}
		}
	}
}

// A name that passed registration but resolves to an internal address when
// the delivery dials (DNS rebinding) is refused at connect time.
func TestClientRefusesAtDialTime(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	g := &netguard.Guard{LookupIP: resolver(map[string]string{"rebind.example.com": "93.184.216.34"})}
	if err := g.CheckURL(context.Background(), "https://rebind.example.com/x"); err != nil {
		t.Fatalf("registration: %v", err)
	}
	// At delivery time the name (here: localhost) resolves to loopback.
	for _, u := range []string{srv.URL, "http://localhost:" + srv.URL[len("http://127.0.0.1:"):]} {
		_, err := g.Client(time.Second).Get(u)
		if !errors.Is(err, netguard.ErrRefused) {
			t.Fatalf("GET %s = %v, want refused at dial", u, err)
		}
	}
	dev := &netguard.Guard{AllowInsecure: true}
	resp, err := dev.Client(time.Second).Get(srv.URL)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("dev guard: %v %v", resp, err)
	}
	resp.Body.Close()
}
