// Package static embeds the chat page so that the server binary needs no
// files beside it.
package static

import (
	"embed"
	"io/fs"
)

//go:embed index.html *.css *.js *.svg
var files embed.FS

// FS returns the page's files, rooted at the page's folder: index.html,
// the style sheet, the ES modules and the icon. Nothing else in static/
// (the browser tests, node_modules, package.json) is embedded.
func FS() fs.FS { return files }
