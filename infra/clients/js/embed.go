// Package jskit holds the client kit's compiled script (dist/wxbridge.js,
// built from src/ by tsc) for Go programs that serve it: the devstack's H5
// page loads it from there.
package jskit

import _ "embed"

// Script is the kit: an ES2017 module, the file a page imports.
//
//go:embed dist/wxbridge.js
var Script []byte
