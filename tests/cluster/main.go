// Command testcluster runs one real Kubernetes control plane in one process for the agent's tests: embedded
// etcd, the real kube-apiserver (TLS from a generated CA, RBAC, service-account token signing), the
// kube-controller-manager's workload, namespace, garbage-collector and service-account controllers, and a fake
// kubelet (see kubelet.go). It listens on a free loopback port, writes <data-dir>/kubeconfig (admin) once the
// API server is ready and the node is registered, and runs until SIGTERM or SIGINT.
//
//	testcluster --data-dir DIR [--port N] [--audit=false] [--apiserver-arg=--flag=value ...]
//
// Every write request (verb, URI with dryRun, user agent, code) is logged to <data-dir>/audit.log, so tests can
// count what a client wrote. Restarting it on the same data dir keeps the objects, certificates and port.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// controllers are the kube-controller-manager controllers the test clusters run.
var controllers = []string{
	"deployment-controller", "replicaset-controller", "statefulset-controller", "daemonset-controller",
	"job-controller", "cronjob-controller", "namespace-controller", "garbage-collector-controller",
	"serviceaccount-controller", "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// ports are chosen once per data dir and kept in ports.json, so a restarted cluster keeps its address.
type ports struct {
	API, EtcdClient, EtcdPeer int
}

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd data, certificates and the kubeconfig (required)")
	port := flag.Int("port", 0, "API server port on 127.0.0.1 (default: a free port, kept across restarts)")
	audit := flag.Bool("audit", true, "log every write request (create, update, patch, delete) to <data-dir>/audit.log")
	var extra stringList
	flag.Var(&extra, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--authentication-token-webhook-config-file=F (repeatable)")
	flag.Parse()
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "testcluster: --data-dir is required")
		os.Exit(2)
	}
	if err := run(*dataDir, *port, *audit, extra); err != nil {
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		os.Exit(1)
	}
}

func run(dataDir string, port int, audit bool, extra []string) error {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	_ = os.Remove(kubeconfigPath) // its presence means "ready"; a restart must not look ready early
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p, err := loadPorts(dir, port)
	if err != nil {
		return err
	}
	certs := pki{dir: filepath.Join(dir, "pki")}
	if err := certs.ensure(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	start := time.Now()
	etcd, err := startEtcd(dir, p.EtcdClient, p.EtcdPeer)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	server := fmt.Sprintf("https://127.0.0.1:%d", p.API)
	internalKubeconfig := certs.path("admin.kubeconfig")
	kc, err := certs.kubeconfig(server)
	if err != nil {
		return err
	}
	if err := os.WriteFile(internalKubeconfig, kc, 0o600); err != nil {
		return err
	}

	// The controller manager's flags must be built before the API server's: building them overrides a
	// client-go feature gate default, which is refused once the gates are bound to a flag set.
	startCM, err := prepareControllerManager(internalKubeconfig, certs)
	if err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	if audit {
		extra, err = auditFlags(dir, extra)
		if err != nil {
			return err
		}
	}
	cmd := apiserver.NewAPIServerCommand() // owns the SIGTERM/SIGINT handler; its context ends on the first signal
	ctx := cmd.Context()
	go exitAfterGrace()
	cmd.SetArgs(append([]string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", p.EtcdClient),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", p.API),
		"--tls-cert-file=" + certs.path("serving.crt"), "--tls-private-key-file=" + certs.path("serving.key"),
		"--client-ca-file=" + certs.path("ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + certs.path("sa.pub"),
		"--service-account-signing-key-file=" + certs.path("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--allow-privileged=true",
		"--profiling=false",
	}, extra...))
	apiErr := make(chan error, 1)
	go func() { apiErr <- cmd.Execute() }()

	if err := waitReady(ctx, server, certs, apiErr); err != nil {
		return err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := runFakeKubelet(ctx, client); err != nil {
		return fmt.Errorf("fake kubelet: %w", err)
	}
	if err := startCM(ctx); err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	tmp := kubeconfigPath + ".tmp"
	if err := os.WriteFile(tmp, kc, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, kubeconfigPath); err != nil {
		return err
	}
	klog.InfoS("testcluster ready", "server", server, "kubeconfig", kubeconfigPath, "startup", time.Since(start))
	fmt.Printf("testcluster ready: %s kubeconfig=%s startup=%s\n", server, kubeconfigPath, time.Since(start).Round(time.Millisecond))

	err = <-apiErr
	_ = os.Remove(kubeconfigPath)
	if ctx.Err() != nil {
		return nil // stopped by a signal: a clean exit
	}
	return err
}

// exitAfterGrace bounds shutdown: the API server drains on the first signal, but the test suite must not wait
// on it for long.
func exitAfterGrace() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	time.Sleep(10 * time.Second)
	os.Exit(0)
}

// prepareControllerManager parses the controller manager's options and returns the function that starts it.
func prepareControllerManager(kubeconfig string, certs pki) (func(context.Context) error, error) {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	known, disabled, aliases := controllermanager.KnownControllers(), controllermanager.ControllersDisabledByDefault(), controllermanager.ControllerAliases()
	named := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &named
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse([]string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + certs.path("sa.key"),
		"--root-ca-file=" + certs.path("ca.crt"),
		"--controller-start-interval=0",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--concurrent-namespace-syncs=10",
		"--concurrent-gc-syncs=40",
	}); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		c, err := s.Config(ctx, known, disabled, aliases)
		if err != nil {
			return err
		}
		go func() {
			if err := controllermanager.Run(ctx, c.Complete()); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "controller manager stopped")
			}
		}()
		return nil
	}, nil
}

// waitReady polls the API server's /readyz with the admin identity until it answers 200.
func waitReady(ctx context.Context, server string, certs pki, apiErr <-chan error) error {
	caPEM, err := os.ReadFile(certs.path("ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(certs.path("admin.crt"), certs.path("admin.key"))
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-apiErr:
			return fmt.Errorf("kube-apiserver exited: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := hc.Get(server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return errors.New("kube-apiserver not ready within 120s")
}

// auditPolicy records the metadata (user, user agent, verb, URI incl. dryRun, response code) of every write.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
`

func auditFlags(dir string, extra []string) ([]string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	return append([]string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-log-mode=blocking",
		"--audit-log-maxsize=0",
	}, extra...), nil
}

func loadPorts(dir string, apiPort int) (ports, error) {
	path := filepath.Join(dir, "ports.json")
	var p ports
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &p); err != nil {
			return p, fmt.Errorf("%s: %w", path, err)
		}
		if apiPort == 0 || apiPort == p.API {
			return p, nil
		}
	}
	free, err := freePorts(3)
	if err != nil {
		return p, err
	}
	p = ports{API: apiPort, EtcdClient: free[1], EtcdPeer: free[2]}
	if p.API == 0 {
		p.API = free[0]
	}
	b, _ := json.Marshal(p)
	return p, os.WriteFile(path, b, 0o600)
}

// freePorts returns n distinct free loopback ports. Every listener stays open until all n are chosen: a port
// closed early can be handed out again by the next bind to port 0, which once gave etcd and the API server the
// same port. Another process may still take one before this process binds it; the launcher retries on that.
func freePorts(n int) ([]int, error) {
	out := make([]int, 0, n)
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
