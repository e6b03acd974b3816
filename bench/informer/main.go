// Command client-go-informer is make bench's Go baseline: the program deploywatch replaces.
//
// A SharedInformerFactory on apps/v1 Deployments in all namespaces, with client-go of the
// newest Kubernetes (its WatchListClient is on by default: the initial state is streamed
// where the server offers it). For each add it prints "AddFunc <json>"; for each update an
// empty line, then "UpdateFunc <json of the OLD object>", as the seed program does; for each
// delete "DeleteFunc". The kubeconfig comes from $KUBECONFIG; -resync sets defaultResync
// (0: no resync). Lines are written unbuffered, one write each, as fmt.Println does.
// -json asks the API server for JSON instead of client-go's default for built-in types,
// protobuf (make bench-apiserver: what the encoding costs the server).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

func printObject(marker string, object any) {
	body, err := json.Marshal(object)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client-go-informer:", err)
		return
	}
	fmt.Println(marker, string(body))
}

func main() {
	resync := flag.Duration("resync", 10*time.Second, "defaultResync of the informer factory (0: off)")
	asJSON := flag.Bool("json", false, "request and accept JSON, not protobuf")
	flag.Parse()
	config, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "client-go-informer:", err)
		os.Exit(2)
	}
	config.QPS, config.Burst = 1000, 1000 // a benchmark measures the watch, not client-side throttling
	if *asJSON {
		config.ContentType, config.AcceptContentTypes = "application/json", "application/json"
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client-go-informer:", err)
		os.Exit(2)
	}
	factory := informers.NewSharedInformerFactory(client, *resync)
	informer := factory.Apps().V1().Deployments().Informer()
	_, err = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(object any) { printObject("AddFunc", object.(*appsv1.Deployment)) },
		UpdateFunc: func(old, _ any) {
			fmt.Println()
			printObject("UpdateFunc", old.(*appsv1.Deployment))
		},
		DeleteFunc: func(any) { fmt.Println("DeleteFunc") },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "client-go-informer:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	informer.Run(ctx.Done())
}
