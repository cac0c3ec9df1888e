// gen writes the two files main.go embeds, as upstream's generate.go does:
// the module's schema.json with the plugin version set, and its
// terraform-mapping.json, both compacted.
//
//	go run ./gen VERSION MODULE_CMD_DIR OUT_DIR
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) != 4 {
		fail(fmt.Errorf("usage: gen VERSION MODULE_CMD_DIR OUT_DIR"))
	}
	version, in, out := os.Args[1], os.Args[2], os.Args[3]

	var schema map[string]json.RawMessage
	read(filepath.Join(in, "schema.json"), &schema)
	if _, ok := schema["resources"]; !ok {
		fail(fmt.Errorf("%s/schema.json has no resources", in))
	}
	v, err := json.Marshal(version)
	fail(err)
	schema["version"] = v
	embedded, err := json.Marshal(schema)
	fail(err)
	fail(os.WriteFile(filepath.Join(out, "schema-embed.json"), embedded, 0o644))

	mapping, err := os.ReadFile(filepath.Join(in, "terraform-mapping.json"))
	fail(err)
	var compact bytes.Buffer
	fail(json.Compact(&compact, mapping))
	fail(os.WriteFile(filepath.Join(out, "terraform-mapping-embed.json"), compact.Bytes(), 0o644))
}

func read(path string, v any) {
	data, err := os.ReadFile(path)
	fail(err)
	fail(json.Unmarshal(data, v))
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
