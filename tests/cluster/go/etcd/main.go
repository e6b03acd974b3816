// Command etcd is the loopback control plane's etcd: the server of go.etcd.io/etcd/server/v3 at
// the version the kube-apiserver beside it requires, started through its embed package with the
// few flags tests/cluster/up.sh passes. etcd's own main lives in a module with replace
// directives, which a consumer's go.mod cannot take, so this is the supported way to build it.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	cfg := embed.NewConfig()
	dataDir := flag.String("data-dir", "default.etcd", "where etcd keeps its data")
	client := flag.String("listen-client-url", "http://127.0.0.1:2379", "the URL clients connect to")
	peer := flag.String("listen-peer-url", "http://127.0.0.1:2380", "the URL of the (only) peer")
	flag.Parse()
	clientURL, err := url.Parse(*client)
	if err != nil {
		log.Fatalf("etcd: --listen-client-url: %v", err)
	}
	peerURL, err := url.Parse(*peer)
	if err != nil {
		log.Fatalf("etcd: --listen-peer-url: %v", err)
	}
	cfg.Name = "deploywatch"
	cfg.Dir = *dataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*clientURL}, []url.URL{*clientURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peerURL}, []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: %v", err)
	}
	defer server.Close()
	select {
	case <-server.Server.ReadyNotify():
		log.Printf("etcd: serving clients on %s", clientURL)
	case err := <-server.Err():
		log.Fatalf("etcd: %v", err)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-signals:
		log.Printf("etcd: %v: stopping", sig)
	case err := <-server.Err():
		log.Fatalf("etcd: %v", err)
	}
}
