// Package store is the standalone node's durable store of rooms' messages
// and room metadata.
package store
