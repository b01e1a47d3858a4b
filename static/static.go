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
// index.html, its style sheet and its ES modules, and the chat page's
// dom.js (h, byId, toast, confirmAction), which the console shares rather
// than keeps a copy of. The admin listener serves it at /admin/
// (server/console).
func AdminFS() fs.FS {
	sub, err := fs.Sub(adminFiles, "admin")
	if err != nil {
		panic(err) // "admin" is a valid path: fs.Sub cannot fail on it
	}
	return adminFS{sub}
}

// sharedDOM is the chat page's module the console imports as its own.
const sharedDOM = "dom.js"

// adminFS is the console's files with the chat page's sharedDOM beside
// them.
type adminFS struct{ admin fs.FS }

// Open implements fs.FS.
func (a adminFS) Open(name string) (fs.File, error) {
	if name == sharedDOM {
		return files.Open(name)
	}
	return a.admin.Open(name)
}
