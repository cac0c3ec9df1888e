// pause holds a pod's namespaces open: it sleeps until it is told to stop.
// vmkube builds it and imports it into containerd as the sandbox image, so
// nodes never pull one from a registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
