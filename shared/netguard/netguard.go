// Package netguard keeps webhook traffic away from internal networks (SSRF):
// it checks URLs when they are registered and checks every address again at
// dial time, after DNS resolution, so a name that later resolves (rebinds)
// to an internal address is still refused.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// Guard decides which webhook destinations are allowed.
type Guard struct {
	// AllowInsecure permits http:// URLs and loopback/private destinations.
	// Only for local development: deployed stacks leave it off.
	AllowInsecure bool
	// LookupIP resolves host names; net.DefaultResolver when nil.
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
}

var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("fd00:ec2::/32"), // EC2 IPv6 metadata and DNS
	netip.MustParsePrefix("64:ff9b::/96"),  // NAT64 can reach IPv4 internals
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved
}

// refusal says why addr may not be a webhook destination ("" if it may).
func (g *Guard) refusal(addr netip.Addr) string {
	addr = addr.Unmap()
	if g.AllowInsecure {
		return ""
	}
	switch {
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsPrivate():
		return "a private address"
	case addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast():
		return "a link-local address (cloud metadata lives there)"
	case addr.IsMulticast(), addr.IsInterfaceLocalMulticast():
		return "a multicast address"
	case addr.IsUnspecified():
		return "an unspecified address"
	}
	for _, p := range blocked {
		if p.Contains(addr) {
			return "a reserved or internal address"
		}
	}
	return ""
}

func (g *Guard) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if g.LookupIP != nil {
		return g.LookupIP(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// CheckURL validates a webhook URL at registration: an absolute https URL
// (http allowed with AllowInsecure) without credentials, whose host resolves
// only to allowed addresses. Errors are EINVALID with a message for clients.
func (g *Guard) CheckURL(ctx context.Context, raw string) error {
	bad := func(format string, args ...any) error {
		return &lull.Error{Code: lull.EINVALID, Param: "url", Message: fmt.Sprintf(format, args...)}
	}
	if len(raw) > 2048 {
		return bad("The webhook URL is longer than 2048 characters.")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !u.IsAbs() {
		return bad("The webhook URL %q is not an absolute URL.", raw)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && g.AllowInsecure:
	default:
		return bad("Webhook URLs must use https (got %q).", u.Scheme)
	}
	if u.User != nil {
		return bad("Webhook URLs must not carry credentials.")
	}
	host := u.Hostname()
	if !g.AllowInsecure && (strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost")) {
		return bad("Webhook URLs must not point at localhost.")
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err = g.lookup(lctx, host)
		cancel()
		if err != nil || len(addrs) == 0 {
			return bad("The webhook host %q does not resolve.", host)
		}
	}
	for _, a := range addrs {
		if why := g.refusal(a); why != "" {
			return bad("The webhook host %q resolves to %s, which is not allowed.", host, why)
		}
	}
	return nil
}

// ErrRefused is returned (wrapped) when a dial targets a refused address.
var ErrRefused = errors.New("netguard: destination address refused")

// Client returns an HTTP client that refuses, at connect time, any address
// the guard does not allow, follows no redirects, and times out after timeout.
func (g *Guard) Client(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{
		Timeout: 5 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrRefused, address)
			}
			if why := g.refusal(ap.Addr()); why != "" {
				return fmt.Errorf("%w: %s is %s", ErrRefused, ap.Addr(), why)
			}
			return nil
		},
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			Proxy:               nil,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     60 * time.Second,
			TLSHandshakeTimeout: 5 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
