package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// customIDs returns the custom_id of every line of a batch input file, in
// order. Lines that are blank or carry no custom_id are skipped: the API
// rejects such files anyway and says which line is wrong.
func customIDs(r io.Reader) ([]string, error) {
	var ids []string
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if id := customID(line); id != "" {
			ids = append(ids, id)
		}
		if err == io.EOF {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read input: %w", err)
		}
	}
}

func customID(line []byte) string {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return ""
	}
	var v struct {
		CustomID string `json:"custom_id"`
	}
	if json.Unmarshal(line, &v) != nil {
		return ""
	}
	return v.CustomID
}

// resultCounts says what writeOrdered wrote.
type resultCounts struct {
	Succeeded int // lines from the output file
	Failed    int // lines from the error file
	Missing   int // input lines with no result in either file
}

// spool is a result file copied to disk with every line's place by custom_id.
type spool struct {
	f   *os.File
	loc map[string][2]int64 // custom_id → offset, length (newline included)
}

func newSpool(dir string, r io.Reader) (*spool, error) {
	f, err := os.CreateTemp(dir, "lull-results-*")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name()) // unlinked: it goes away with the descriptor
	s := &spool{f: f, loc: map[string][2]int64{}}
	if r == nil {
		return s, nil
	}
	br := bufio.NewReaderSize(r, 1<<20)
	w := bufio.NewWriterSize(f, 1<<20)
	var off int64
	for {
		line, rerr := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			if _, err := w.Write(line); err != nil {
				f.Close()
				return nil, err
			}
			if id := customID(line); id != "" {
				if _, dup := s.loc[id]; !dup {
					s.loc[id] = [2]int64{off, int64(len(line))}
				}
			}
			off += int64(len(line))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return nil, fmt.Errorf("read results: %w", rerr)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (s *spool) copy(w io.Writer, id string) (bool, error) {
	l, ok := s.loc[id]
	if !ok {
		return false, nil
	}
	delete(s.loc, id)
	_, err := io.Copy(w, io.NewSectionReader(s.f, l[0], l[1]))
	return true, err
}

// writeOrdered writes the batch's results in the order of the input's
// custom_ids: lines of output (succeeded) and errs (failed) files go to out,
// or the failed ones to errOut when it is non-nil. Either reader may be nil
// (a batch writes no empty file). Results whose custom_id is not in order
// follow at the end. The files are spooled in dir (the system's temporary
// folder when empty), so memory stays bounded by the number of lines.
func writeOrdered(order []string, output, errs io.Reader, out, errOut io.Writer, dir string) (resultCounts, error) {
	var n resultCounts
	ok, err := newSpool(dir, output)
	if err != nil {
		return n, err
	}
	defer ok.f.Close()
	bad, err := newSpool(dir, errs)
	if err != nil {
		return n, err
	}
	defer bad.f.Close()
	if errOut == nil {
		errOut = out
	}
	bo, be := bufio.NewWriterSize(out, 1<<20), bufio.NewWriterSize(errOut, 1<<20)
	if errOut == out {
		be = bo
	}
	for _, id := range order {
		found, err := ok.copy(bo, id)
		if err != nil {
			return n, err
		}
		if found {
			n.Succeeded++
			continue
		}
		if found, err = bad.copy(be, id); err != nil {
			return n, err
		}
		if found {
			n.Failed++
			continue
		}
		n.Missing++
	}
	// Anything left had a custom_id the input did not list.
	for _, s := range []struct {
		sp *spool
		w  *bufio.Writer
		c  *int
	}{{ok, bo, &n.Succeeded}, {bad, be, &n.Failed}} {
		for id := range s.sp.loc {
			if _, err := s.sp.copy(s.w, id); err != nil {
				return n, err
			}
			*s.c++
		}
	}
	return n, errors.Join(bo.Flush(), be.Flush())
}
