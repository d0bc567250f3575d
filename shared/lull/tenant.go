package lull

// MaxTenantLen is the longest tenant ID.
const MaxTenantLen = 128

// MaxWebhooksPerTenant is how many webhook endpoints one tenant may have.
const MaxWebhooksPerTenant = 20

// ValidTenant reports whether t can name a tenant: 1 to MaxTenantLen
// characters among letters, digits and "-_.:@". Storage keys join tenant IDs
// with other parts using '#', so a tenant ID can never hold one (nor
// anything else outside that set); keys are refused where tenants are
// created and where they are loaded.
func ValidTenant(t string) bool {
	if t == "" || len(t) > MaxTenantLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == '@') {
			return false
		}
	}
	return true
}
