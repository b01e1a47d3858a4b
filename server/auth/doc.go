// Package auth holds the security primitives of meeting access control, as
// PROTOCOL.md describes them in "Rooms that belong to someone" and "Tokens
// (optional)": a JWT [Verifier], passcode hashing ([HashPasscode],
// [CheckPasscode] and the concurrency-bounding [Checker]), host keys
// ([NewHostKey], [HashHostKey], [HostKeyMatches]), the failed-passcode limiter
// [Attempts] and the bars on removed members, [Bars].
//
// The package does no I/O beyond reading key files, knows nothing of the hub
// or the network, and takes the current time as an argument wherever time
// matters, so that its callers and tests decide what "now" is.
//
// No error returned by this package contains a token, a secret, a passcode
// or a host key: the server logs errors and sends their codes to clients.
package auth
