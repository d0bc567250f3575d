//go:build linux || darwin || freebsd || netbsd || openbsd

package term_test

import (
	"os"
	"testing"

	"github.com/creack/pty"

	"github.com/lull-ai/lull/cmd/lull/internal/term"
)

func TestTerminalAndWidth(t *testing.T) {
	t.Parallel()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 132}); err != nil {
		t.Fatal(err)
	}
	if !term.IsTerminal(tty) || term.Width(tty) != 132 {
		t.Errorf("pty: terminal %v width %d, want true 132", term.IsTerminal(tty), term.Width(tty))
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if term.IsTerminal(w) || term.Width(w) != 80 {
		t.Errorf("pipe: terminal %v width %d, want false 80", term.IsTerminal(w), term.Width(w))
	}
	if term.IsTerminal(nil) || term.Width(nil) != 80 {
		t.Error("nil file")
	}
}
