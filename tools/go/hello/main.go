// hello is vmkube's demo app: it answers every HTTP request with its version
// and the pod that served it, so a reviewer sees replicas and rollouts at work.
// vmkube builds it and preloads it into containerd, so nodes never pull it.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	version := os.Getenv("HELLO_VERSION")
	host, _ := os.Hostname()
	addr := ":8080"
	if port := os.Getenv("PORT"); port != "" {
		addr = ":" + port
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from vmkube %s on %s\n", version, host)
	})
	log.Printf("hello %s listening on %s", version, addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
