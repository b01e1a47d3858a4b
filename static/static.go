// Package static embeds the chat page and the operator's console so that the server binary needs no
// files beside it.
package static

import (
	"embed"
	"io/fs"
)

//go:embed index.html *.css *.js *.svg
var files embed.FS

//go:embed admin
var adminFiles embed.FS

// FS returns the page's files, rooted at the page's folder: index.html,
// the style sheet, the ES modules and the icon. Nothing else in static/
// (the browser tests, node_modules, package.json) is embedded.
func FS() fs.FS { return files }

// AdminFS returns the operator's console page, rooted at static/admin:
// index.html, its style sheet and its ES modules. The admin listener serves
// it at /admin/ (server/console).
func AdminFS() fs.FS {
	sub, err := fs.Sub(adminFiles, "admin")
	if err != nil {
		panic(err) // "admin" is a valid path: fs.Sub cannot fail on it
	}
	return sub
}
