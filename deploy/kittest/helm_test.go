package kittest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// chartDir is deploy/helm/passgate.
const chartDir = "../helm/passgate"

// base are the values every rendering needs.
func base() map[string]any {
	return map[string]any{
		"passgate": map[string]any{
			"issuer":         "https://mcp.example.com",
			"resources":      []string{"https://mcp.example.com/mcp", "https://mcp.example.com/other"},
			"trustedProxies": []string{"10.0.0.0/8"},
		},
	}
}

// with returns base() with the dotted keys set.
func with(kv ...any) map[string]any {
	v := base()
	for i := 0; i < len(kv); i += 2 {
		m := v
		parts := strings.Split(kv[i].(string), ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = kv[i+1]
	}
	return v
}

// valuesFile writes values to a file for helm's -f.
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// helmTemplate renders the chart as release "passgate" in namespace "mcp",
// the names deploy/kubernetes's examples use.
func helmTemplate(t *testing.T, values map[string]any) (string, error) {
	t.Helper()
	return run(tool(t, "helm", "template", "passgate", chartDir, "--namespace", "mcp", "-f", valuesFile(t, values)))
}

// render lints and renders the chart and decodes every document strictly.
func render(t *testing.T, values map[string]any) []any {
	t.Helper()
	if out, err := run(tool(t, "helm", "lint", "--strict", chartDir, "--namespace", "mcp", "-f", valuesFile(t, values))); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	out, err := helmTemplate(t, values)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "postgres://") {
		t.Error("the rendered chart contains a database URL")
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	return objs
}

// container returns the Deployment's passgate container.
func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "passgate" {
		t.Fatalf("want one container named passgate, got %d", len(cs))
	}
	return cs[0]
}

// flag returns the value of --name=VALUE in args, and whether it is there.
func flag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func mountAt(c corev1.Container, dir string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == dir {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func volume(d *appsv1.Deployment, name string) *corev1.Volume {
	for i := range d.Spec.Template.Spec.Volumes {
		if d.Spec.Template.Spec.Volumes[i].Name == name {
			return &d.Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

// checkCommon asserts what holds in every mode: explicit listeners, the
// Service's three ports, probes on the binary's health paths, the
// hardened security context, and a grace period that covers passgate's
// shutdown.
func checkCommon(t *testing.T, objs []any) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	d := one[*appsv1.Deployment](t, objs)
	c := container(t, d)
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("args %q do not start with serve", c.Args)
	}
	wantFlags := map[string]string{
		"issuer":           "https://mcp.example.com",
		"resource":         "https://mcp.example.com/mcp,https://mcp.example.com/other",
		"http-listen":      ":8080",
		"grpc-listen":      ":9191",
		"metrics-listen":   ":9464",
		"trusted-proxies":  "10.0.0.0/8",
		"shutdown-delay":   "5s",
		"shutdown-timeout": "15s",
	}
	for name, want := range wantFlags {
		if got, ok := flag(c.Args, name); !ok || got != want {
			t.Errorf("--%s = %q (set %v), want %q", name, got, ok, want)
		}
	}

	// Every container port is a listener passgate was told to open, and
	// the Service exposes each by name.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if diff := cmp.Diff(map[string]int32{"http": 8080, "grpc": 9191, "metrics": 9464}, ports); diff != "" {
		t.Errorf("container ports (-want +got):\n%s", diff)
	}
	svc := one[*corev1.Service](t, objs)
	if svc.Name != "passgate" || svc.Namespace != "mcp" {
		t.Errorf("Service %s/%s, want mcp/passgate (the examples' name)", svc.Namespace, svc.Name)
	}
	for name, port := range ports {
		i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == name })
		if i < 0 || svc.Spec.Ports[i].Port != port || svc.Spec.Ports[i].TargetPort.String() != name {
			t.Errorf("Service lacks port %s:%d → %s", name, port, name)
		}
	}
	// Istio and Envoy Gateway speak HTTP/2 to a port whose appProtocol is
	// grpc; without it Istio would treat the check as HTTP/1.1.
	if i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "grpc" }); i >= 0 {
		if ap := svc.Spec.Ports[i].AppProtocol; ap == nil || *ap != "grpc" {
			t.Errorf("grpc port appProtocol %s, want grpc", show(ap))
		}
	}
	if diff := cmp.Diff(d.Spec.Selector.MatchLabels, svc.Spec.Selector); diff != "" {
		t.Errorf("Service selector differs from the Deployment's (-deployment +service):\n%s", diff)
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("pod template lacks selector label %s=%s", k, v)
		}
	}

	// Probes: the paths cmd/passgate serves on the HTTP listener.
	for name, p := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{
		"startup":   {c.StartupProbe, "/healthz"},
		"liveness":  {c.LivenessProbe, "/healthz"},
		"readiness": {c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe GET %s on %s, want %s on http", name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}

	// Non-root, read-only root filesystem, no capabilities, no privilege
	// escalation, the runtime's seccomp profile, no API token.
	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("pod does not run as a non-root user")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccomp profile is not RuntimeDefault")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Error("container has no security context")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v, want drop ALL", sc.Capabilities)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the pod mounts a Kubernetes API token passgate never uses")
	}
	if mountAt(c, "/tmp") == nil {
		t.Error("no writable /tmp on the read-only root filesystem")
	}

	// The kubelet's SIGKILL must not come before passgate has served its
	// --shutdown-delay and drained for --shutdown-timeout.
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < 5+15 {
		t.Errorf("terminationGracePeriodSeconds %s < shutdown delay 5s + timeout 15s", show(g))
	}
	return d, c
}

func TestChartSQLite(t *testing.T) {
	objs := render(t, base())
	d, c := checkCommon(t, objs)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas %s, want exactly 1 for SQLite", show(d.Spec.Replicas))
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %s, want Recreate: two pods must never open the database", d.Spec.Strategy.Type)
	}
	if got, _ := flag(c.Args, "data-dir"); got != "/var/lib/passgate" {
		t.Errorf("--data-dir %q", got)
	}
	m := mountAt(c, "/var/lib/passgate")
	if m == nil {
		t.Fatal("the data directory is not mounted")
	}
	pvc := one[*corev1.PersistentVolumeClaim](t, objs)
	v := volume(d, m.Name)
	if v == nil || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != pvc.Name {
		t.Errorf("the data volume is not the chart's claim %s", pvc.Name)
	}
	if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Error("`helm uninstall` would delete the database")
	}
	if env(c, "DATABASE_URL") != nil || env(c, "DATABASE_URL_FILE") != nil {
		t.Error("SQLite mode sets a database URL")
	}
	if len(only[*policyv1.PodDisruptionBudget](objs)) != 0 {
		t.Error("a PodDisruptionBudget for the single SQLite replica would block node drains")
	}
	if d.Spec.Template.Spec.SecurityContext.FSGroup == nil {
		t.Error("no fsGroup: the non-root user cannot write the volume")
	}
}

func TestChartPostgreSQL(t *testing.T) {
	for _, tc := range []struct {
		passAs string
		check  func(t *testing.T, d *appsv1.Deployment, c corev1.Container)
	}{
		{"file", func(t *testing.T, d *appsv1.Deployment, c corev1.Container) {
			// The URL is a file from the Secret; DATABASE_URL_FILE names it.
			if env(c, "DATABASE_URL") != nil {
				t.Error("DATABASE_URL is set in file mode")
			}
			e := env(c, "DATABASE_URL_FILE")
			if e == nil || e.ValueFrom != nil {
				t.Fatal("no DATABASE_URL_FILE")
			}
			dir, key := filepath.Split(e.Value)
			m := mountAt(c, filepath.Clean(dir))
			if m == nil || !m.ReadOnly {
				t.Fatalf("DATABASE_URL_FILE %s is not in a read-only mount", e.Value)
			}
			v := volume(d, m.Name)
			if v == nil || v.Secret == nil || v.Secret.SecretName != "passgate-db" {
				t.Fatalf("the mount at %s is not the Secret passgate-db", dir)
			}
			if len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "url" || v.Secret.Items[0].Path != key {
				t.Errorf("secret items %+v, want key url at %s", v.Secret.Items, key)
			}
			if m := v.Secret.DefaultMode; m == nil || *m&0o007 != 0 {
				t.Errorf("secret file mode %s is readable by others", fmtMode(m))
			}
		}},
		{"env", func(t *testing.T, d *appsv1.Deployment, c corev1.Container) {
			e := env(c, "DATABASE_URL")
			if e == nil || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				t.Fatal("DATABASE_URL is not taken from a Secret")
			}
			if ref := e.ValueFrom.SecretKeyRef; ref.Name != "passgate-db" || ref.Key != "url" {
				t.Errorf("DATABASE_URL from %s/%s, want passgate-db/url", ref.Name, ref.Key)
			}
		}},
	} {
		t.Run(tc.passAs, func(t *testing.T) {
			objs := render(t, with(
				"database.mode", "postgresql",
				"replicaCount", 3,
				"postgresql.existingSecret", "passgate-db",
				"postgresql.secretKey", "url",
				"postgresql.passAs", tc.passAs,
			))
			d, c := checkCommon(t, objs)
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
				t.Errorf("replicas %s, want 3", show(d.Spec.Replicas))
			}
			if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
				t.Errorf("strategy %s, want RollingUpdate", d.Spec.Strategy.Type)
			}
			if len(only[*corev1.PersistentVolumeClaim](objs)) != 0 {
				t.Error("PostgreSQL mode creates a volume claim")
			}
			pdb := one[*policyv1.PodDisruptionBudget](t, objs)
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 ||
				!cmp.Equal(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
				t.Errorf("PodDisruptionBudget %+v: want maxUnavailable 1 over the Deployment's pods", pdb.Spec)
			}
			if _, ok := flag(c.Args, "data-dir"); ok {
				t.Error("PostgreSQL mode passes --data-dir")
			}
			for _, o := range objs {
				if s, ok := o.(*corev1.Secret); ok {
					t.Errorf("the chart renders Secret %s: the URL must stay in the operator's Secret", s.Name)
				}
			}
			for _, a := range c.Args {
				if strings.Contains(strings.ToLower(a), "database") {
					t.Errorf("the database is passed as an argument: %q", a)
				}
			}
			tc.check(t, d, c)
		})
	}
}

// TestChartShutdown: the grace period is passgate's whole shutdown: an
// optional preStop sleep (done by the kubelet: the image has no shell),
// --shutdown-delay, --shutdown-timeout, and 5s to exit.
func TestChartShutdown(t *testing.T) {
	for _, tc := range []struct{ sleep, delay, timeout int }{{0, 5, 15}, {3, 10, 30}} {
		objs := render(t, with("shutdown.preStopSleepSeconds", tc.sleep, "shutdown.delaySeconds", tc.delay, "shutdown.timeoutSeconds", tc.timeout))
		d := one[*appsv1.Deployment](t, objs)
		c := container(t, d)
		if got, _ := flag(c.Args, "shutdown-delay"); got != fmt.Sprintf("%ds", tc.delay) {
			t.Errorf("%+v: --shutdown-delay %q", tc, got)
		}
		if got, _ := flag(c.Args, "shutdown-timeout"); got != fmt.Sprintf("%ds", tc.timeout) {
			t.Errorf("%+v: --shutdown-timeout %q", tc, got)
		}
		if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != int64(tc.sleep+tc.delay+tc.timeout+5) {
			t.Errorf("%+v: terminationGracePeriodSeconds %s, want %d", tc, show(g), tc.sleep+tc.delay+tc.timeout+5)
		}
		switch {
		case tc.sleep == 0 && c.Lifecycle != nil:
			t.Errorf("%+v: a preStop hook with no sleep", tc)
		case tc.sleep > 0 && (c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil ||
			c.Lifecycle.PreStop.Sleep.Seconds != int64(tc.sleep)):
			t.Errorf("%+v: no preStop sleep of %ds", tc, tc.sleep)
		}
	}
}

// TestChartPolicy: a policy file, inline or from the operator's ConfigMap,
// is mounted read-only and passed as --policy.
func TestChartPolicy(t *testing.T) {
	const content = "rules:\n  - resource: https://mcp.example.com/mcp\n    groups: [staff]\n"
	for name, tc := range map[string]struct {
		values    map[string]any
		configMap string
	}{
		"none":   {base(), ""},
		"inline": {with("policy.content", content), "passgate-policy"},
		"existing": {with("policy.existingConfigMap", "mine", "policy.key", "p.yaml", "policy.mountPath", "/etc/p"),
			"mine"},
	} {
		t.Run(name, func(t *testing.T) {
			objs := render(t, tc.values)
			d := one[*appsv1.Deployment](t, objs)
			c := container(t, d)
			got, ok := flag(c.Args, "policy")
			if tc.configMap == "" {
				if ok {
					t.Errorf("--policy=%s without a policy", got)
				}
				return
			}
			dir, key := filepath.Split(got)
			m := mountAt(c, filepath.Clean(dir))
			if m == nil || !m.ReadOnly {
				t.Fatalf("--policy=%s is not in a read-only mount", got)
			}
			v := volume(d, m.Name)
			if v == nil || v.ConfigMap == nil || v.ConfigMap.Name != tc.configMap {
				t.Fatalf("the policy mount is not ConfigMap %s", tc.configMap)
			}
			if len(v.ConfigMap.Items) != 1 || v.ConfigMap.Items[0].Path != key {
				t.Errorf("ConfigMap items %+v do not put the file at %s", v.ConfigMap.Items, got)
			}
			cms := only[*corev1.ConfigMap](objs)
			if name == "existing" {
				if len(cms) != 0 {
					t.Error("the chart renders a ConfigMap over the operator's")
				}
				return
			}
			if len(cms) != 1 || cms[0].Name != tc.configMap || cms[0].Data[key] != content {
				t.Errorf("policy ConfigMap %+v, want %s with the content under %s", cms, tc.configMap, key)
			}
			if d.Spec.Template.Annotations["checksum/policy"] == "" {
				t.Error("a changed policy would not roll the pods")
			}
		})
	}
}

// TestChartMonitoring: the ServiceMonitor scrapes the Service's metrics
// port, and the PrometheusRule's groups are deploy/prometheus-alerts.yml's,
// the rules' one home.
func TestChartMonitoring(t *testing.T) {
	if objs := render(t, base()); len(only[*monitoringv1.ServiceMonitor](objs))+len(only[*monitoringv1.PrometheusRule](objs)) != 0 {
		t.Error("monitoring objects rendered though disabled (a cluster without the Prometheus Operator would refuse them)")
	}
	objs := render(t, with("serviceMonitor.enabled", true, "prometheusRule.enabled", true,
		"serviceMonitor.labels", map[string]any{"release": "prom"}))
	svc := one[*corev1.Service](t, objs)
	sm := one[*monitoringv1.ServiceMonitor](t, objs)
	if sm.Labels["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v lack the operator's selector label", sm.Labels)
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, which the Service lacks", k, v)
		}
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want the metrics port's /metrics", sm.Spec.Endpoints)
	}

	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy/prometheus-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(raw, &file); err != nil {
		t.Fatalf("deploy/prometheus-alerts.yml: %v", err)
	}
	rule := one[*monitoringv1.PrometheusRule](t, objs)
	if len(file.Groups) == 0 {
		t.Fatal("deploy/prometheus-alerts.yml has no groups")
	}
	if diff := cmp.Diff(file.Groups, rule.Spec.Groups); diff != "" {
		t.Errorf("PrometheusRule differs from deploy/prometheus-alerts.yml (-file +chart):\n%s", diff)
	}
}

// TestChartRefusesBadValues: values that cannot work fail the render with
// one line that says what to set, instead of a pod that crash-loops.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{with("passgate.issuer", ""), "passgate.issuer is required"},
		{with("passgate.resources", []string{}), "passgate.resources is required"},
		{with("database.mode", "mysql"), "database.mode must be sqlite or postgresql"},
		{with("database.mode", "postgresql"), "postgresql.existingSecret is required"},
		{with("database.mode", "postgresql", "postgresql.existingSecret", "s", "postgresql.passAs", "inline"), "postgresql.passAs must be file or env"},
		{with("policy.content", "x", "policy.existingConfigMap", "y"), "not both"},
	} {
		out, err := helmTemplate(t, tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %v: err %v, want %q\n%s", tc.values, err, tc.want, out)
		}
	}
}

func show[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func fmtMode(p *int32) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprintf("%#o", *p)
}

// TestChartFlagsAreServeFlags: every flag the chart passes is one that
// `passgate serve` of this repository accepts, so a misspelt or renamed
// flag fails here rather than in a crash-looping pod.
func TestChartFlagsAreServeFlags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "passgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/passgate")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "serve", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("passgate serve -h: %v\n%s", err, help)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	if !known["issuer"] || !known["shutdown-delay"] {
		t.Fatalf("could not read the flags from:\n%s", help)
	}
	modes := []map[string]any{
		with("passgate.extraArgs", []string{"--registration=closed"}),
		with("database.mode", "postgresql", "postgresql.existingSecret", "db", "shutdown.preStopSleepSeconds", 2),
	}
	if known["policy"] {
		modes = append(modes, with("policy.content", "x: y\n"))
	} else {
		t.Log("this passgate has no --policy flag yet: the chart's policy rendering is not checked against it")
	}
	for _, values := range modes {
		c := container(t, one[*appsv1.Deployment](t, render(t, values)))
		if c.Args[0] != "serve" {
			t.Fatalf("args %q", c.Args)
		}
		for _, a := range c.Args[1:] {
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") || !known[name] {
				t.Errorf("the chart passes %q, which passgate serve does not accept", a)
			}
		}
	}
}
