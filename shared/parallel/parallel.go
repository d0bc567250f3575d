// Package parallel runs independent steps with bounded concurrency.
package parallel

import (
	"context"
	"errors"
	"sync"
)

// Each calls f(ctx, i) for every i in [0, n), with at most limit calls
// running at once (at least one), waits for all of them and returns their
// errors joined (nil when every call succeeded). It stops starting calls
// once ctx is done; those are reported as ctx's error.
func Each(ctx context.Context, limit, n int, f func(ctx context.Context, i int) error) error {
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return errors.Join(append(errs, ctx.Err())...)
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
