// Package auth issues and checks the credentials Patchbay accepts: short-lived
// HS256 browser tokens (JWT) and static API keys for server-to-server calls.
//
// Neither a token nor a secret ever appears in an error message or a log line.
package auth
