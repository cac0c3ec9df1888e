// pulumi-resource-kubernetes serves the Kubernetes provider, like upstream's
// provider/cmd/pulumi-resource-kubernetes, whose embedded files are generated
// by its Makefile and so missing from the module zip: tools/build generates
// them next to this file from the module's schema.json and
// terraform-mapping.json (see gen/) before `go build`.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}
