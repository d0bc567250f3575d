// Package term answers the two questions the command line asks of its
// output: is it a terminal, and how wide is it.
package term

import "os"

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return f != nil && isTerminal(int(f.Fd())) }

// Width returns f's width in columns, or 80 when it is unknown.
func Width(f *os.File) int {
	if f == nil {
		return 80
	}
	if w := width(int(f.Fd())); w > 0 {
		return w
	}
	return 80
}
