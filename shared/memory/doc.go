// Package memory holds in-memory implementations of lull's storage, queue
// and blob interfaces, for unit tests that need no emulator: Store
// (lull.Generations, lull.APIKeys, lull.Webhooks, lull.Batches), Queue
// (lull.Queue, lull.BatchSender, with SQS's visibility timeouts, receive
// counts, delays and dead-letter redrive) and Blobs (lull.Blobs).
//
// They keep the adapters' contracts on the points callers rely on: every
// generation and batch transition is conditional as in shared/dynamodb and
// fails with the same ECONFLICT and ENOTFOUND errors; times are kept to the
// millisecond, as DynamoDB items keep them; queue delays and visibility
// timeouts are whole seconds, as SQS takes them. shared/storetest runs its
// suites against them to hold them to that.
//
// Each type takes a fault function (SetFault) that can make any call fail
// before it touches state, and Queue reads its time from a Clock that tests
// can move by hand. The package imports only the standard library and
// shared/lull.
package memory
