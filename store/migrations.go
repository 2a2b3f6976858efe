package store

import (
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Migration is one schema migration of a backend: a SQL file named
// "<version>_<description>.sql".
type Migration struct {
	Version int    // from 1, without gaps
	Name    string // the file name
	SQL     string // the file's contents
}

// LoadMigrations reads every file in dir of fsys as a migration and
// returns them by version. It fails unless each name starts with a
// positive version and '_' and the versions run 1, 2, 3… without gaps or
// repeats, so a misnamed file stops the binary rather than the schema.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		v, _, ok := strings.Cut(name, "_")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive version and '_'", name)
		}
		b, err := fs.ReadFile(fsys, dir+"/"+name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: n, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := range ms {
		if ms[i].Version != i+1 {
			return nil, fmt.Errorf("migrations: want version %d, found %s", i+1, ms[i].Name)
		}
	}
	return ms, nil
}
