package kittest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// repoRoot is the passgate repository, from this package's directory.
const repoRoot = "../.."

// tool runs a tool pinned in this module's go.mod: the binary
// scripts/test.sh built into $PASSGATE_KIT_TOOLS, or else `go tool NAME`,
// which builds the same pinned version (slowly, the first time).
func tool(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	if dir := os.Getenv("PASSGATE_KIT_TOOLS"); dir != "" {
		return exec.Command(filepath.Join(dir, name), args...)
	}
	return exec.Command("go", append([]string{"tool", name}, args...)...)
}

// run runs cmd and returns its standard output, or an error carrying its
// standard error.
func run(cmd *exec.Cmd) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// istioObject is an Istio resource: Kubernetes's envelope, decoded
// strictly, around a spec that is one of istio.io/api's protobuf messages.
// (istio.io/client-go's own types unmarshal their specs with
// AllowUnknownFields, which would let a misspelt field through; protojson
// rejects unknown fields.)
type istioObject struct {
	metav1.TypeMeta
	Metadata metav1.ObjectMeta
	Spec     proto.Message
}

func (o *istioObject) UnmarshalJSON(b []byte) error {
	var env struct {
		metav1.TypeMeta
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     json.RawMessage   `json:"spec"`
	}
	if err := decodeStrict(b, &env); err != nil {
		return err
	}
	o.TypeMeta, o.Metadata = env.TypeMeta, env.Metadata
	if err := protojson.Unmarshal(env.Spec, o.Spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	return nil
}

// kinds maps apiVersion/kind to a new value of the project's own Go type
// for it. A document of any other kind fails the decode.
var kinds = map[string]func() any{
	"v1/Service":                    func() any { return new(corev1.Service) },
	"v1/ConfigMap":                  func() any { return new(corev1.ConfigMap) },
	"v1/PersistentVolumeClaim":      func() any { return new(corev1.PersistentVolumeClaim) },
	"apps/v1/Deployment":            func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget": func() any { return new(policyv1.PodDisruptionBudget) },

	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(monitoringv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(monitoringv1.PrometheusRule) },

	"gateway.networking.k8s.io/v1/Gateway":   func() any { return new(gwapiv1.Gateway) },
	"gateway.networking.k8s.io/v1/HTTPRoute": func() any { return new(gwapiv1.HTTPRoute) },
	"gateway.envoyproxy.io/v1alpha1/SecurityPolicy": func() any {
		return new(egv1a1.SecurityPolicy)
	},
	"gateway.envoyproxy.io/v1alpha1/ClientTrafficPolicy": func() any {
		return new(egv1a1.ClientTrafficPolicy)
	},

	"networking.istio.io/v1/Gateway": func() any {
		return &istioObject{Spec: new(networkingv1alpha3.Gateway)}
	},
	"networking.istio.io/v1/VirtualService": func() any {
		return &istioObject{Spec: new(networkingv1alpha3.VirtualService)}
	},
	"security.istio.io/v1/AuthorizationPolicy": func() any {
		return &istioObject{Spec: new(securityv1beta1.AuthorizationPolicy)}
	},
}

// decodeStrict decodes JSON into v, failing on a field v's type does not
// have.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

// yamlDocSep separates the documents of a YAML stream.
var yamlDocSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeManifests decodes every document of a YAML stream strictly into
// its kind's Go type: an unknown kind, an unknown field or a duplicate key
// is an error.
func decodeManifests(stream string) ([]any, error) {
	var objs []any
	for i, doc := range yamlDocSep.Split(stream, -1) {
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if string(j) == "null" {
			continue // empty, or comments only
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(j, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		mk, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("document %d: unexpected kind %s/%s", i, tm.APIVersion, tm.Kind)
		}
		obj := mk()
		if err := decodeStrict(j, obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// only returns the objects of type T.
func only[T any](objs []any) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the single object of type T, failing the test unless there
// is exactly one.
func one[T any](t *testing.T, objs []any) T {
	t.Helper()
	all := only[T](objs)
	if len(all) != 1 {
		var zero T
		t.Fatalf("want one %T, got %d", zero, len(all))
	}
	return all[0]
}

// TestDecoderIsStrict: the decoder fails on an unknown field, at the top
// and deep inside a spec, for each project's types; otherwise the tests
// that use it prove nothing.
func TestDecoderIsStrict(t *testing.T) {
	for name, doc := range map[string]string{
		"k8s top-level":     "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspc: {}\n",
		"k8s nested":        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n",
		"k8s duplicate key": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n",
		"unknown kind":      "apiVersion: v1\nkind: Servic\nmetadata: {name: x}\n",
		"prometheus-operator": "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n" +
			"spec:\n  endpoints:\n    - port: metrics\n      intervall: 30s\n",
		"gateway api": "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: x}\n" +
			"spec:\n  rules:\n    - matches:\n        - path: {type: PathPrefix, valeu: /mcp}\n",
		"envoy gateway": "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: x}\n" +
			"spec:\n  extAuth:\n    failOpn: false\n",
		"istio envelope": "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec: {}\nstatus: {}\n",
		"istio spec": "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\n" +
			"spec:\n  action: CUSTOM\n  rules:\n    - to:\n        - operation:\n            notPath: [/login]\n",
	} {
		if _, err := decodeManifests(doc); err == nil {
			t.Errorf("%s: decoded without error:\n%s", name, doc)
		}
	}
	// And accepts the same documents spelt right.
	ok := "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\n" +
		"spec:\n  action: CUSTOM\n  rules:\n    - to:\n        - operation:\n            notPaths: [/login]\n"
	if _, err := decodeManifests(ok); err != nil {
		t.Errorf("a valid AuthorizationPolicy: %v", err)
	}
}
