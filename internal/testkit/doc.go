// Package testkit is what the tests of several packages share: the
// configuration of a test server, a node behind a real WebSocket endpoint, a
// Pusher protocol client that reads its frames in the background, a webhook
// receiver, signed HTTP API requests, free ports and a locked buffer.
//
// It imports none of the packages whose tests use it (not actors, whose own
// tests use it), so that any package's tests may.
package testkit
