// Package lull holds lull's domain: generations and their lifecycle, tenants,
// the queue job format, domain errors, and the small interfaces that the
// API, the worker and the Lambdas need from storage and queues. It imports
// only the standard library; adapters for AWS live in sibling packages.
package lull
