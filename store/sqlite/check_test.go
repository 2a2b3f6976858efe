package sqlite

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSchemaVersionIsReadOnly: SchemaVersion neither creates a missing
// database nor migrates or changes an existing one.
func TestSchemaVersionIsReadOnly(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "passgate.db")
	if _, _, err := SchemaVersion(ctx, path); err == nil {
		t.Error("SchemaVersion of a missing file succeeded")
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("SchemaVersion created the file")
	}
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	have, want, err := SchemaVersion(ctx, path)
	if err != nil || have != 0 || want == 0 {
		t.Errorf("unmigrated: have %d want %d err %v; want 0, >0, nil", have, want, err)
	}
	if have, _, _ := SchemaVersion(ctx, path); have != 0 {
		t.Errorf("SchemaVersion migrated the database to %d", have)
	}
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	have, want, err = SchemaVersion(ctx, path)
	if err != nil || have != want {
		t.Errorf("migrated: have %d want %d err %v", have, want, err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Error("SchemaVersion changed the database file")
	}
}
