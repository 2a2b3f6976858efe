package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// noopAuthz is the reference ext_authz server: it allows everything
// without looking at the request, the cheapest check there can be.
type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
	answer *authv3.CheckResponse
}

var noopOK = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (n noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if n.answer != nil {
		return n.answer, nil
	}
	return noopOK, nil
}

// refAnswer makes the reference answer as passgate does for the hit token,
// still without looking at the request: the same identity headers (HTTP)
// and the same CheckResponse (gRPC), captured from passgate. Its zero
// value is the plain no-op answer.
type refAnswer struct {
	grpc   []byte      // an encoded CheckResponse; nil: noopOK
	header http.Header // set on every HTTP answer
}

func (a refAnswer) args() []string {
	var args []string
	if a.grpc != nil {
		args = append(args, "-grpc-answer", base64.StdEncoding.EncodeToString(a.grpc))
	}
	for name, vs := range a.header {
		for _, v := range vs {
			args = append(args, "-http-header", name+": "+v)
		}
	}
	return args
}

// serveReference serves the no-op gRPC and HTTP checks on the listeners
// until ctx ends. The HTTP server has passgate's timeouts so connection
// handling is the same on both sides.
func serveReference(ctx context.Context, grpcLn, httpLn net.Listener, a refAnswer) error {
	gs := grpc.NewServer()
	na := noopAuthz{}
	if a.grpc != nil {
		na.answer = new(authv3.CheckResponse)
		if err := proto.Unmarshal(a.grpc, na.answer); err != nil {
			return fmt.Errorf("reference: gRPC answer: %w", err)
		}
	}
	authv3.RegisterAuthorizationServer(gs, na)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			for name, vs := range a.header {
				h[name] = vs
			}
			w.WriteHeader(http.StatusOK)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(grpcLn) }()
	go func() { errc <- hs.Serve(httpLn) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		gs.Stop()
		hs.Close()
		return fmt.Errorf("reference: %w", err)
	}
	gs.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("reference: %w", err)
	}
	return nil
}

// cmdReference runs the reference as its own process ("passgate-bench
// reference"), printing "ready GRPCADDR HTTPADDR" once it listens. It exits
// when ctx ends or stdin closes (the parent died).
func cmdReference(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reference", flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcAddr := fs.String("grpc-listen", "127.0.0.1:0", "gRPC listen address")
	httpAddr := fs.String("http-listen", "127.0.0.1:0", "HTTP listen address")
	var a refAnswer
	fs.Func("grpc-answer", "base64 of the CheckResponse to answer with (default: allow, nothing else)", func(v string) (err error) {
		a.grpc, err = base64.StdEncoding.DecodeString(v)
		return err
	})
	fs.Func("http-header", "'Name: value' to set on every HTTP answer (repeatable)", func(v string) error {
		name, val, ok := strings.Cut(v, ": ")
		if !ok {
			return fmt.Errorf("%q is not 'Name: value'", v)
		}
		if a.header == nil {
			a.header = http.Header{}
		}
		a.header.Add(name, val)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return fmt.Errorf("reference: %w", err)
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("reference: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	fmt.Fprintf(stdout, "ready %s %s\n", gl.Addr(), hl.Addr())
	return serveReference(ctx, gl, hl, a)
}

// reference is a running reference server.
type reference struct {
	grpcAddr, httpAddr string
	pid                int // 0 when in process
	stop               func()
}

// startReference starts the reference in a subprocess of this binary, or
// in this process.
func startReference(ctx context.Context, inProcess bool, a refAnswer) (*reference, error) {
	if inProcess {
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			gl.Close()
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { _ = serveReference(ctx, gl, hl, a); close(done) }()
		return &reference{grpcAddr: gl.Addr().String(), httpAddr: hl.Addr().String(),
			stop: func() { cancel(); <-done }}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start reference: %w", err)
	}
	cmd := exec.Command(self, append([]string{"reference"}, a.args()...)...)
	cmd.Env = cleanEnv()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start reference: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start reference: %w", err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start reference: %w", err)
	}
	stop := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "ready" {
			stop()
			return nil, fmt.Errorf("start reference: unexpected output %q", l)
		}
		return &reference{grpcAddr: f[1], httpAddr: f[2], pid: cmd.Process.Pid, stop: stop}, nil
	case <-time.After(10 * time.Second):
		stop()
		return nil, errors.New("start reference: not ready after 10s")
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
}

// cleanEnv is the environment of child processes: enough to run, nothing
// that configures passgate behind our back.
func cleanEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
