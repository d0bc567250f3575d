//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package term

// Elsewhere (Windows) output is treated as plain: progress prints lines.
func isTerminal(int) bool { return false }

func width(int) int { return 0 }
